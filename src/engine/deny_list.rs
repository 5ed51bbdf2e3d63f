//! The `run` tool's deny-list, read the way a shell reads the command: quotes
//! and backslashes removed, words split on any whitespace, commands split on
//! `;`, `&`, `|`, `(`, `)`, backquotes and newlines. A courtesy that tells an
//! agent early what the factory does for it (push, configure git); the
//! guarantee is the fence around the command ([`crate::effects::isolation`]).

use std::path::Path;

/// The deny-list entry `command` runs into, if any. An entry's first word
/// matches a program by name (`/usr/bin/git` is `git`); its other words must
/// follow in the same command, in order, other words allowed between
/// (`git -C x remote add`).
pub fn denied<'a>(command: &str, deny: &'a [String]) -> Option<&'a str> {
    let commands = split(command);
    deny.iter().map(String::as_str).find(|entry| {
        let wanted: Vec<&str> = entry.split_whitespace().collect();
        let Some((program, rest)) = wanted.split_first() else {
            return false;
        };
        commands.iter().any(|words| {
            words.iter().enumerate().any(|(i, word)| {
                program_name(word) == *program && follows_in_order(&words[i + 1..], rest)
            })
        })
    })
}

fn program_name(word: &str) -> &str {
    Path::new(word)
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or(word)
}

fn follows_in_order(words: &[String], wanted: &[&str]) -> bool {
    let mut words = words.iter();
    wanted.iter().all(|w| words.any(|word| word == w))
}

/// The words of each simple command in `line`.
fn split(line: &str) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    let mut word: Option<String> = None;
    let mut chars = line.chars().peekable();
    let finish = |word: &mut Option<String>, commands: &mut Vec<Vec<String>>| {
        if let (Some(w), Some(current)) = (word.take(), commands.last_mut()) {
            current.push(w);
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                let w = word.get_or_insert_with(String::new);
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    w.push(c);
                }
            }
            '"' => {
                let w = word.get_or_insert_with(String::new);
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(next) = chars.next() {
                                w.push(next);
                            }
                        }
                        c => w.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(next) = chars.next()
                    && next != '\n'
                {
                    word.get_or_insert_with(String::new).push(next);
                }
            }
            ';' | '&' | '|' | '(' | ')' | '`' | '\n' | '{' | '}' => {
                finish(&mut word, &mut commands);
                commands.push(Vec::new());
            }
            '$' if chars.peek() == Some(&'(') => {
                finish(&mut word, &mut commands);
                commands.push(Vec::new());
            }
            c if c.is_whitespace() => finish(&mut word, &mut commands),
            c => word.get_or_insert_with(String::new).push(c),
        }
    }
    finish(&mut word, &mut commands);
    commands.retain(|c| !c.is_empty());
    commands
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deny() -> Vec<String> {
        ["git push", "git remote", "git config", "sudo"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn spacing_quoting_and_paths_do_not_hide_a_command() {
        for command in [
            "git  remote add evil http://x",
            "git\tremote add evil x",
            "echo ok; git push origin main",
            "true && /usr/bin/git push",
            "g'i't remote -v",
            "\"git\" \"remote\"",
            "git \\\nremote",
            "git -C ../.. config core.hooksPath /tmp",
            "echo $(sudo id)",
            "(cd x && git push)",
        ] {
            assert!(denied(command, &deny()).is_some(), "{command:?} passed");
        }
    }

    #[test]
    fn ordinary_commands_pass() {
        for command in [
            "git status",
            "git log --oneline -5",
            "cargo test -- --nocapture",
            "echo 'git push is done for you'",
            "grep -r remote src",
        ] {
            assert_eq!(denied(command, &deny()), None, "{command:?} was refused");
        }
    }
}
