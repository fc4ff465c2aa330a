//! An error and its causes on one line, each said once — what the CLI, the
//! device SDK, the PAM module and the server's logs print. tonic's and
//! hyper's transport errors hide the useful part ("connection refused") in
//! the source chain, and repeat a cause's text one level up.

use std::error::Error;

/// `error: cause: cause…`, skipping a cause whose text was already said.
pub fn error_chain(error: &dyn Error) -> String {
    with_causes(&error.to_string(), error.source())
}

/// `message: cause: cause…` over `source` and its causes, skipping empty
/// texts and any already said; "no details given" when nothing is left.
pub fn with_causes(message: &str, mut source: Option<&(dyn Error + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !message.is_empty() {
        parts.push(message.to_owned());
    }
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
        source = cause.source();
    }
    if parts.is_empty() {
        "no details given".to_owned()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use std::fmt;

    use super::*;

    /// An error with a text and an optional cause.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1
                .as_deref()
                .map(|cause| cause as &(dyn Error + 'static))
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        // As tonic reports a refused connection: the middle layer repeats.
        let error = Layer(
            "transport error",
            Some(Box::new(Layer(
                "tcp connect error",
                Some(Box::new(Layer(
                    "tcp connect error",
                    Some(Box::new(Layer("Connection refused (os error 111)", None))),
                ))),
            ))),
        );
        assert_eq!(
            error_chain(&error),
            "transport error: tcp connect error: Connection refused (os error 111)"
        );
    }

    #[test]
    fn an_empty_message_with_no_cause_says_so() {
        assert_eq!(with_causes("", None), "no details given");
        assert_eq!(error_chain(&Layer("alone", None)), "alone");
    }
}
