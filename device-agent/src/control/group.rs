//! The group allowed to use the control socket (`--socket-group`): a name
//! from the group database or a numeric GID, resolved once at start.

use std::fmt;
use std::process::Command;

/// A resolved group: the name as given and its GID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketGroup {
    /// The name (or number) as configured.
    pub name: String,
    /// The group id the socket is given.
    pub gid: u32,
}

/// Why `--socket-group` names no group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no group {0:?} (neither in /etc/group nor known to `getent group`); create it or give a \
     numeric GID"
)]
pub struct UnknownGroup(pub String);

impl SocketGroup {
    /// Resolves `text`: a decimal GID as is, else a name looked up in
    /// `/etc/group`, then through `getent group` (LDAP, systemd and other
    /// name services).
    pub fn resolve(text: &str) -> Result<Self, UnknownGroup> {
        let name = text.trim();
        let unknown = || UnknownGroup(name.to_owned());
        if name.is_empty() {
            return Err(unknown());
        }
        let gid = match name.parse::<u32>() {
            // (u32::MAX is chown's "leave unchanged", not a group.)
            Ok(u32::MAX) => return Err(unknown()),
            Ok(gid) => gid,
            Err(_) => std::fs::read_to_string("/etc/group")
                .ok()
                .and_then(|text| gid_in(&text, name))
                .or_else(|| getent(name))
                .ok_or_else(unknown)?,
        };
        Ok(Self {
            name: name.to_owned(),
            gid,
        })
    }
}

impl fmt::Display for SocketGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name, self.gid)
    }
}

/// The GID of `name` in a group file (`name:x:gid:members` lines).
fn gid_in(group_file: &str, name: &str) -> Option<u32> {
    group_file.lines().find_map(|line| {
        let mut fields = line.split(':');
        let entry = fields.next()?;
        let gid = fields.nth(1)?;
        (entry == name).then(|| gid.parse().ok()).flatten()
    })
}

/// The GID of `name` as the system's name services know it.
fn getent(name: &str) -> Option<u32> {
    let output = Command::new("getent")
        .args(["group", "--", name])
        .output()
        .ok()
        .filter(|output| output.status.success())?;
    gid_in(&String::from_utf8_lossy(&output.stdout), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_is_a_gid() {
        assert_eq!(
            SocketGroup::resolve("1234"),
            Ok(SocketGroup {
                name: "1234".into(),
                gid: 1234
            })
        );
    }

    #[test]
    fn names_are_looked_up_in_the_group_database() {
        assert_eq!(SocketGroup::resolve("root").map(|group| group.gid), Ok(0));
        assert_eq!(
            SocketGroup::resolve("no-such-group-assent"),
            Err(UnknownGroup("no-such-group-assent".into()))
        );
        assert!(SocketGroup::resolve(" ").is_err());
        assert!(SocketGroup::resolve("4294967295").is_err());
    }

    #[test]
    fn the_group_file_is_read_by_field() {
        let file = "root:x:0:\nassent:x:998:alice,bob\nbroken\nassentx:x:5:\n";
        assert_eq!(gid_in(file, "assent"), Some(998));
        assert_eq!(gid_in(file, "root"), Some(0));
        assert_eq!(gid_in(file, "assen"), None);
        assert_eq!(gid_in(file, "broken"), None);
    }
}
