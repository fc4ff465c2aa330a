//! Decision policies (`accept`, `deny`, `prompt`, `desktop`, `exec:CMD`) as
//! a handler of `assent-device` ([`PolicyHandler`]). A policy gives no
//! answer only when the server withdrew the request meanwhile (`desktop`
//! also waits for that when nobody answers, so the login expires); every
//! failure denies, so the agent never accepts a login nobody approved.
//! Under number matching an acceptance carries the number picked by a
//! person (`prompt`, `desktop`) or a command (`exec:`); `accept` cannot
//! pick, so it denies.

mod desktop;
mod exec;
mod prompt;

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use assent_device::{Answer, DenyReason, Handler, Request, Withdrawn};
use tokio::time::Instant;

use crate::AgentError;

/// How the agent answers confirmation requests.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Policy {
    /// Approve every request (for kiosks and tests); denies requests that
    /// need number matching, since it cannot know the number.
    Accept,
    /// Refuse every request with reason `policy`.
    Deny,
    /// Ask on the controlling terminal; deny when there is none.
    #[default]
    Prompt,
    /// Ask the person in the graphical session through a desktop
    /// notification (Accept / Deny / Not me); unanswered, the login expires.
    Desktop,
    /// Run `sh -c CMD` with the request as JSON on stdin; a JSON answer on
    /// the first line of stdout decides, else exit 0 accepts (under number
    /// matching, with the picked number on stdout).
    Exec(String),
}

impl FromStr for Policy {
    type Err = AgentError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim() {
            "accept" => Ok(Self::Accept),
            "deny" => Ok(Self::Deny),
            "prompt" => Ok(Self::Prompt),
            "desktop" => Ok(Self::Desktop),
            other => match other.strip_prefix("exec:") {
                Some(command) if !command.trim().is_empty() => Ok(Self::Exec(command.to_owned())),
                _ => Err(AgentError::InvalidPolicy(text.to_owned())),
            },
        }
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Accept => f.write_str("accept"),
            Self::Deny => f.write_str("deny"),
            Self::Prompt => f.write_str("prompt"),
            Self::Desktop => f.write_str("desktop"),
            Self::Exec(command) => write!(f, "exec:{command}"),
        }
    }
}

/// The configured policy as the device's handler.
#[derive(Debug, Clone)]
pub struct PolicyHandler {
    policy: Policy,
    exec_timeout: Duration,
    prompter: Arc<prompt::Prompter>,
}

impl Handler for PolicyHandler {
    async fn confirm(&self, request: Request, withdrawn: Withdrawn) -> Answer {
        // `None`: withdrawn meanwhile; the SDK drops the answer anyway.
        self.decide(&request, &withdrawn)
            .await
            .unwrap_or(Answer::Deny(DenyReason::Policy))
    }
}

impl PolicyHandler {
    /// A handler for `policy`; `exec_timeout` bounds `exec:` commands.
    pub fn new(policy: Policy, exec_timeout: Duration) -> Self {
        Self {
            policy,
            exec_timeout,
            prompter: Arc::new(prompt::Prompter::default()),
        }
    }

    /// Decides on `request`; `None` when it was withdrawn first.
    pub(crate) async fn decide(&self, request: &Request, cancel: &Withdrawn) -> Option<Answer> {
        let time_left = request.time_left();
        match &self.policy {
            Policy::Accept if request.number_choices.is_offered() => {
                tracing::warn!(
                    "number matching needs a person (prompt policy) or an exec policy; denying"
                );
                Some(Answer::Deny(DenyReason::Policy))
            }
            Policy::Accept => Some(Answer::Accept { number: None }),
            Policy::Deny => Some(Answer::Deny(DenyReason::Policy)),
            Policy::Prompt => {
                // Without an expiry the server's Cancellation still ends the prompt.
                let deadline = time_left.map(|left| Instant::now() + left);
                self.prompter.ask(request, deadline, cancel).await
            }
            Policy::Desktop => desktop::decide(request, cancel).await,
            Policy::Exec(command) => {
                // Never wait past the expiry: the answer would be useless.
                let timeout =
                    time_left.map_or(self.exec_timeout, |left| left.min(self.exec_timeout));
                exec::decide(command, request, timeout, cancel).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use assent_device::{Kind, NumberChoices};

    use super::*;

    pub(super) fn sample_confirmation() -> Request {
        Request {
            transaction_id: "0f8fad5b-d9cb-469f-a165-70867728950e".into(),
            kind: Kind::Otp,
            application_id: "app-1".into(),
            application_name: "Example Shop".into(),
            user_id: "alice".into(),
            message: "Sign in from Firefox".into(),
            context: BTreeMap::from([("ip".to_owned(), "192.0.2.1".to_owned())]),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(60)),
            number_choices: NumberChoices::default(),
        }
    }

    /// The sample request under number matching, offering 12, 45 and 78.
    pub(super) fn matching_confirmation() -> Request {
        Request {
            kind: Kind::Push,
            number_choices: NumberChoices::parse(&[12, 45, 78]).unwrap(),
            ..sample_confirmation()
        }
    }

    #[test]
    fn policies_parse_from_their_names() {
        assert_eq!("accept".parse::<Policy>().unwrap(), Policy::Accept);
        assert_eq!("deny".parse::<Policy>().unwrap(), Policy::Deny);
        assert_eq!("prompt".parse::<Policy>().unwrap(), Policy::Prompt);
        assert_eq!("desktop".parse::<Policy>().unwrap(), Policy::Desktop);
        assert_eq!(
            "exec:test -n \"$X\"".parse::<Policy>().unwrap(),
            Policy::Exec("test -n \"$X\"".into())
        );
    }

    #[test]
    fn unknown_or_empty_policies_are_refused() {
        for text in ["", "allow", "exec:", "exec:  ", "Accept"] {
            assert!(
                matches!(text.parse::<Policy>(), Err(AgentError::InvalidPolicy(_))),
                "{text:?}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for policy in [
            Policy::Accept,
            Policy::Deny,
            Policy::Prompt,
            Policy::Desktop,
            Policy::Exec("true".into()),
        ] {
            assert_eq!(policy.to_string().parse::<Policy>().unwrap(), policy);
        }
    }

    #[test]
    fn the_default_policy_prompts() {
        assert_eq!(Policy::default(), Policy::Prompt);
    }

    #[tokio::test]
    async fn fixed_policies_decide_without_asking() {
        let cancel = Withdrawn::default();
        let request = sample_confirmation();
        let accept = PolicyHandler::new(Policy::Accept, Duration::from_secs(1));
        assert_eq!(
            accept.decide(&request, &cancel).await,
            Some(Answer::Accept { number: None })
        );
        let deny = PolicyHandler::new(Policy::Deny, Duration::from_secs(1));
        assert_eq!(
            deny.decide(&request, &cancel).await,
            Some(Answer::Deny(DenyReason::Policy))
        );
    }

    #[test]
    fn an_acceptance_must_pick_exactly_when_numbers_are_offered() {
        let deny = Answer::Deny(DenyReason::NotMe);
        assert!(deny.answers(&[]) && deny.answers(&[12, 45, 78]));
        let plain = Answer::Accept { number: None };
        assert!(plain.answers(&[]));
        assert!(!plain.answers(&[12, 45, 78]));
        let picked = Answer::Accept { number: Some(45) };
        assert!(picked.answers(&[12, 45, 78]));
        assert!(!picked.answers(&[12, 44, 78]));
        assert!(!picked.answers(&[]));
    }

    #[tokio::test]
    async fn the_accept_policy_denies_when_a_number_must_be_picked() {
        let accept = PolicyHandler::new(Policy::Accept, Duration::from_secs(1));
        assert_eq!(
            accept
                .decide(&matching_confirmation(), &Withdrawn::default())
                .await,
            Some(Answer::Deny(DenyReason::Policy))
        );
    }
}
