//! Every provider key a test stores is a secret to watch for. No response may carry one
//! (checked on every reply, in [`super::Call::try_send`]); and when `E2E_PLAINTEXTS` names a
//! file, each is appended to it so that `scripts/test.sh` can scan the whole run's output
//! and every worker log for them afterwards.

use std::{io::Write, sync::Mutex};

/// Shorter keys are too common as substrings ("x") to say anything when found.
const MIN_WATCHED_LEN: usize = 12;

static WATCHED: Mutex<Vec<String>> = Mutex::new(Vec::new());

pub fn watch(plaintext: &str) {
    if plaintext.chars().count() < MIN_WATCHED_LEN {
        return;
    }
    let mut watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if watched.iter().any(|w| w == plaintext) {
        return;
    }
    watched.push(plaintext.to_string());
    if let Some(path) = std::env::var_os("E2E_PLAINTEXTS") {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open $E2E_PLAINTEXTS");
        // grep -F -f reads one pattern a line; a key with a line break can't be stored anyway.
        if !plaintext.contains('\n') {
            writeln!(file, "{plaintext}").expect("write $E2E_PLAINTEXTS");
        }
    }
}

/// Panics if `text` contains a watched plaintext key.
pub fn assert_absent(what: &str, text: &str) {
    let watched = WATCHED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(leaked) = watched.iter().find(|w| text.contains(w.as_str())) {
        panic!("a stored plaintext key ({leaked:?}) appears in {what}");
    }
}
