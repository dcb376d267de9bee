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
            let (host, port) = match hostport.rsplit_once(':') {
                Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
                    let port = port
                        .parse::<u16>()
                        .map_err(|_| bad("the port is not a number"))?;
                    (host.to_string(), Some(port))
                }
                _ => (hostport.to_string(), None),
            };
            (user, host, port, module_path.to_string())
        } else {
            let (authority, module_path) = text
                .split_once("::")
                .ok_or_else(|| bad("not an rsync address"))?;
            let (user, host) = split_user(authority);
            (user, host.to_string(), None, module_path.to_string())
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(bad("no host"));
        }
        let (module, path) = split_module(&rest);
        if module.is_empty() {
            return Err(bad("no module"));
        }
        if user.as_deref() == Some("") {
            return Err(bad("empty user name"));
        }
        Ok(Self {
            user,
            host,
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
}
