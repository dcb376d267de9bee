//! rsync daemon addresses: `rsync://[USER@]HOST[:PORT]/MODULE[/PATH]` or
//! `[USER@]HOST::MODULE[/PATH]` in, an `RsyncUrl` out. Pure; unit-tested.

use std::fmt;

/// A validated rsync daemon destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsyncUrl {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
    pub module: String,
    /// Path inside the module, without leading or trailing '/' ("" for the module root).
    pub path: String,
}

/// True when `text` looks like an rsync daemon address rather than a local path.
pub fn looks_like_rsync(text: &str) -> bool {
    text.starts_with("rsync://") || text.contains("::")
}

fn split_user(text: &str) -> (Option<String>, &str) {
    match text.rsplit_once('@') {
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, text),
    }
}

fn split_module(text: &str) -> (String, String) {
    let text = text.trim_matches('/');
    match text.split_once('/') {
        Some((module, path)) => (module.to_string(), path.trim_matches('/').to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// `HOST::MODULE` split at the first "::" outside brackets, so `[::1]::m` names host `::1`.
fn split_daemon(text: &str) -> Option<(&str, &str)> {
    let mut in_brackets = false;
    for (i, c) in text.char_indices() {
        match c {
            '[' => in_brackets = true,
            ']' => in_brackets = false,
            ':' if !in_brackets && text[i..].starts_with("::") => {
                return Some((&text[..i], &text[i + 2..]));
            }
            _ => {}
        }
    }
    None
}

/// `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` of the `rsync://` form.
fn split_port(hostport: &str) -> Result<(&str, Option<&str>), &'static str> {
    if let Some(inner) = hostport.strip_prefix('[') {
        let (host, after) = inner.split_once(']').ok_or("'[' without ']'")?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err("text after ']' that is not :PORT"),
        };
    }
    Ok(match hostport.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (hostport, None),
    })
}

impl RsyncUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!(
                "TARGET {text}: {why}; expected rsync://[USER@]HOST[:PORT]/MODULE[/PATH] or [USER@]HOST::MODULE[/PATH]"
            )
        };
        let (user, host, port, rest) = if let Some(rest) = text.strip_prefix("rsync://") {
            let (authority, module_path) = rest.split_once('/').ok_or_else(|| bad("no module"))?;
            let (user, hostport) = split_user(authority);
            let (host, port) = split_port(hostport).map_err(bad)?;
            let port = port
                .map(|p| {
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))
                })
                .transpose()?;
            (user, host, port, module_path)
        } else {
            let (authority, module_path) =
                split_daemon(text).ok_or_else(|| bad("not an rsync address"))?;
            let (user, host) = split_user(authority);
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            (user, host, None, module_path)
        };
        if host.is_empty() {
            return Err(bad("no host"));
        }
        // Anything of these in a host would make `destination()` name another place.
        if host.contains(['/', '@', '[', ']'])
            || host.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(bad("the host holds '/', '@', a bracket or a space"));
        }
        let (module, path) = split_module(rest);
        if module.is_empty() {
            return Err(bad("no module"));
        }
        match user.as_deref() {
            Some("") => return Err(bad("empty user name")),
            Some(u) if u.contains('/') => return Err(bad("the user name holds '/'")),
            _ => {}
        }
        Ok(Self {
            user,
            host: host.to_string(),
            port,
            module,
            path,
        })
    }

    /// The destination argument for the rsync client, always in `rsync://` form (so a port
    /// needs no separate option), ending in '/' so the listed paths land inside it.
    pub fn destination(&self) -> String {
        let user = self
            .user
            .as_ref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        let path = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}/", self.path)
        };
        format!("rsync://{user}{host}{port}/{}/{path}", self.module)
    }
}

impl fmt::Display for RsyncUrl {
    /// The destination without anything secret (there is nothing secret in it: passwords
    /// never appear in URLs here).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.destination().trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_parse() {
        let a = RsyncUrl::parse("rsync://rsync_backup@127.0.0.1:8730/backup/sub/dir/").unwrap();
        assert_eq!(a.user.as_deref(), Some("rsync_backup"));
        assert_eq!(a.host, "127.0.0.1");
        assert_eq!(a.port, Some(8730));
        assert_eq!(a.module, "backup");
        assert_eq!(a.path, "sub/dir");
        assert_eq!(
            a.destination(),
            "rsync://rsync_backup@127.0.0.1:8730/backup/sub/dir/"
        );
        let b = RsyncUrl::parse("rsync_backup@192.168.1.160::backup").unwrap();
        assert_eq!(b.port, None);
        assert_eq!(b.path, "");
        assert_eq!(
            b.destination(),
            "rsync://rsync_backup@192.168.1.160/backup/"
        );
        let c = RsyncUrl::parse("host::mod/p").unwrap();
        assert_eq!(
            (c.user, c.module.as_str(), c.path.as_str()),
            (None, "mod", "p")
        );
        let v6 = RsyncUrl::parse("rsync://[::1]:873/m").unwrap();
        assert_eq!(v6.host, "::1");
        assert_eq!(v6.destination(), "rsync://[::1]:873/m/");
    }

    #[test]
    fn bad_addresses_say_what_is_expected() {
        for text in [
            "rsync://host",
            "rsync://host:x/m",
            "::m",
            "host::",
            "rsync://@h/m",
        ] {
            let err = RsyncUrl::parse(text).unwrap_err();
            assert!(err.contains("expected rsync://"), "{text}: {err}");
        }
        assert!(looks_like_rsync("h::m") && looks_like_rsync("rsync://h/m"));
        assert!(!looks_like_rsync("/backup/dir"));
    }

    /// Found by the round-trip property: each parsed, but its `destination()` named another
    /// place (or did not parse): "rsync://]:/a" gave host "]:", sent as "rsync://[]:]/a/".
    #[test]
    fn hosts_the_destination_cannot_name_are_refused() {
        for text in [
            "rsync://]:/a",
            "a/b::m",
            "h/x::m",
            "rsync://[a]b]/m",
            "rsync://[h/m",
            "rsync://[::1]x/m",
            "rsync://h o/m",
            "u/v@h::m",
        ] {
            let err = RsyncUrl::parse(text).unwrap_err();
            assert!(err.contains("expected rsync://"), "{text}: {err}");
        }
    }

    /// Found by the same property: IPv6 without a port was read as `[:` port `1]`.
    #[test]
    fn bracketed_hosts_parse_with_and_without_a_port() {
        let bare = RsyncUrl::parse("rsync://[::1]/m").unwrap();
        assert_eq!((bare.host.as_str(), bare.port), ("::1", None));
        let daemon = RsyncUrl::parse("u@[fe80::1]::m/p").unwrap();
        assert_eq!(daemon.host, "fe80::1");
        assert_eq!(daemon.destination(), "rsync://u@[fe80::1]/m/p/");
    }

    mod prop {
        use proptest::prelude::*;

        use super::super::*;

        /// Text built from the characters that matter to the grammar, so most cases reach
        /// deep into it (random text almost never holds "::" or "rsync://").
        fn piece() -> impl Strategy<Value = String> {
            proptest::collection::vec(
                prop_oneof![
                    4 => proptest::char::range('a', 'e').prop_map(String::from),
                    1 => Just("0".to_string()),
                    1 => Just("873".to_string()),
                    1 => Just(":".to_string()),
                    1 => Just("::".to_string()),
                    1 => Just("@".to_string()),
                    1 => Just("/".to_string()),
                    1 => Just("[".to_string()),
                    1 => Just("]".to_string()),
                    1 => Just(" ".to_string()),
                    1 => Just("é".to_string()),
                ],
                0..12,
            )
            .prop_map(|parts| parts.concat())
        }

        fn url_like() -> impl Strategy<Value = String> {
            (
                prop_oneof![Just(""), Just("rsync://")],
                piece(),
                prop_oneof![Just(""), Just("::"), Just(":"), Just("/"), Just("@")],
                piece(),
            )
                .prop_map(|(scheme, a, sep, b)| format!("{scheme}{a}{sep}{b}"))
        }

        fn check(text: &str) -> Result<(), TestCaseError> {
            match RsyncUrl::parse(text) {
                Ok(url) => {
                    prop_assert!(!url.host.is_empty() && !url.module.is_empty());
                    // What the rsync client is given must name the same destination.
                    let again = RsyncUrl::parse(&url.destination());
                    prop_assert_eq!(
                        again.as_ref(),
                        Ok(&url),
                        "{} -> {}",
                        text,
                        url.destination()
                    );
                    prop_assert_eq!(RsyncUrl::parse(&url.to_string()), Ok(url));
                }
                Err(message) => prop_assert!(message.contains("expected rsync://"), "{}", message),
            }
            Ok(())
        }

        proptest! {
            #![proptest_config(crate::prop::config(256))]

            #[test]
            fn prop_rsync_url_any_text_never_panics(text in any::<String>()) {
                check(&text)?;
            }

            #[test]
            fn prop_rsync_url_parsed_round_trips_through_destination(text in url_like()) {
                check(&text)?;
            }
        }
    }
}
