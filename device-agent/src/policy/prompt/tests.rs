//! Unit tests of the prompt: the question, the answers and the bounded
//! conversation under number matching (lines fed through a channel).

use super::super::tests::{matching_confirmation, sample_confirmation};
use assent_device::Withdrawn;
use tokio_util::sync::CancellationToken;

use super::*;

#[test]
fn the_question_names_the_application_message_context_and_expiry() {
    let text = question(&sample_confirmation());
    assert!(text.contains("Log in to Example Shop? Sign in from Firefox"));
    assert!(text.contains("ip: 192.0.2.1"));
    assert!(text.contains("Expires at"));
}

#[test]
fn answers_are_yes_or_no_and_nothing_else() {
    let none = NumberChoices::default();
    let accept = Answer::Accept { number: None };
    assert_eq!(parse_answer(" Y\n", &none), Ok(accept));
    assert_eq!(parse_answer("yes", &none), Ok(accept));
    assert_eq!(
        parse_answer("n", &none),
        Ok(Answer::Deny(DenyReason::NotMe))
    );
    assert_eq!(
        parse_answer("cancel", &none),
        Ok(Answer::Deny(DenyReason::CancelledByUser))
    );
    assert!(parse_answer("", &none).is_err());
    assert!(parse_answer("sure", &none).is_err());
    assert!(parse_answer("45", &none).is_err());
}

#[test]
fn the_matching_question_asks_for_the_number() {
    let text = question(&matching_confirmation());
    assert!(text.contains("pushed to your device"));
    assert!(text.ends_with(
        "Which number does the login page show? 12, 45 or 78 ([n]o, not me / [c]ancel): "
    ));
    assert!(!question(&sample_confirmation()).contains("pushed"));
}

#[test]
fn under_number_matching_only_an_offered_number_accepts() {
    let choices = matching_confirmation().number_choices;
    assert_eq!(
        parse_answer(" 45 ", &choices),
        Ok(Answer::Accept { number: Some(45) })
    );
    assert_eq!(
        parse_answer("NO", &choices),
        Ok(Answer::Deny(DenyReason::NotMe))
    );
    assert_eq!(
        parse_answer("c", &choices),
        Ok(Answer::Deny(DenyReason::CancelledByUser))
    );
    let hint = parse_answer("13", &choices).unwrap_err();
    assert!(
        hint.contains("13 is not one of the numbers offered"),
        "{hint}"
    );
    assert!(hint.contains("12, 45 or 78"), "{hint}");
    for answer in ["y", "yes", "", "4 5"] {
        assert!(parse_answer(answer, &choices).is_err(), "{answer:?}");
    }
}

/// Answers `request` with `typed` lines; returns the verdict and what was shown.
async fn answer(request: &Request, typed: &[&str]) -> (Option<Answer>, String) {
    let (sender, mut lines) = mpsc::channel(8);
    for line in typed {
        sender.send((*line).to_owned()).await.unwrap();
    }
    let mut shown = String::new();
    let verdict = converse(request, &mut lines, None, &Withdrawn::default(), |text| {
        shown.push_str(text)
    })
    .await;
    (verdict, shown)
}

#[tokio::test]
async fn a_wrong_answer_is_asked_again_then_the_number_accepts() {
    let (verdict, shown) = answer(&matching_confirmation(), &["y", "78"]).await;
    assert_eq!(verdict, Some(Answer::Accept { number: Some(78) }));
    assert!(shown.contains("Type 12, 45 or 78"), "{shown}");
}

#[tokio::test]
async fn three_answers_without_an_offered_number_cancel() {
    let (verdict, shown) = answer(&matching_confirmation(), &["13", "yes", "", "45"]).await;
    assert_eq!(verdict, Some(Answer::Deny(DenyReason::CancelledByUser)));
    assert!(shown.ends_with("(no number picked; the login is cancelled)\n"));
    let (verdict, _) = answer(&matching_confirmation(), &["13", "n"]).await;
    assert_eq!(verdict, Some(Answer::Deny(DenyReason::NotMe)));
}

#[tokio::test]
async fn without_number_matching_wrong_answers_are_not_counted() {
    let (verdict, _) = answer(&sample_confirmation(), &["?", "?", "?", "y"]).await;
    assert_eq!(verdict, Some(Answer::Accept { number: None }));
}

#[tokio::test]
async fn a_withdrawn_question_has_no_verdict() {
    let (_sender, mut lines) = mpsc::channel(1);
    let token = CancellationToken::new();
    let cancel = Withdrawn::from(token.clone());
    token.cancel();
    let verdict = converse(&matching_confirmation(), &mut lines, None, &cancel, |_| {}).await;
    assert_eq!(verdict, None);
}

#[tokio::test]
async fn without_a_terminal_the_prompt_denies() {
    // Under `cargo test` stdin is not a terminal.
    if std::io::stdin().is_terminal() {
        return;
    }
    let verdict = Prompter::default()
        .ask(&sample_confirmation(), None, &Withdrawn::default())
        .await;
    assert_eq!(verdict, Some(Answer::Deny(DenyReason::Policy)));
}
