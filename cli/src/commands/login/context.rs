//! `--context key=value`, shared by every kind of login: parsing one pair and
//! collecting them into the request's map.

use std::collections::BTreeMap;

/// Parses one `--context key=value`, splitting on the first `=`.
pub fn parse_pair(raw: &str) -> Result<(String, String), String> {
    match raw.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        Some(_) => Err(format!("{raw:?} has an empty key; expected key=value")),
        None => Err(format!("{raw:?} has no `=`; expected key=value")),
    }
}

/// Collects the pairs, refusing a key given twice.
pub fn to_map(pairs: &[(String, String)]) -> Result<BTreeMap<String, String>, String> {
    let mut map = BTreeMap::new();
    for (key, value) in pairs {
        if map.insert(key.clone(), value.clone()).is_some() {
            return Err(format!("--context key {key:?} is given more than once"));
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_splits_on_the_first_equals_sign() {
        assert_eq!(
            parse_pair("query=a=b").unwrap(),
            ("query".to_owned(), "a=b".to_owned())
        );
        assert_eq!(parse_pair("ip=").unwrap(), ("ip".to_owned(), String::new()));
    }

    #[test]
    fn context_without_equals_or_key_is_refused() {
        assert!(parse_pair("browser").unwrap_err().contains("no `=`"));
        assert!(parse_pair("=firefox").unwrap_err().contains("empty key"));
    }

    #[test]
    fn repeated_context_key_is_refused() {
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("a".to_owned(), "2".to_owned()),
        ];
        assert!(to_map(&pairs).unwrap_err().contains("\"a\""));
        let pairs = vec![
            ("a".to_owned(), "1".to_owned()),
            ("b".to_owned(), "2".to_owned()),
        ];
        assert_eq!(to_map(&pairs).unwrap().len(), 2);
    }
}
