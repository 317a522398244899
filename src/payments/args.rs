//! The payment service's command line ([`ServiceArgs`]), parsed by clap.

use std::path::Path;
use std::time::Duration;

use super::ProcessorSettings;

/// `payments [--port PORT] [--database-url URL] [--log-format text|json] [--authorization-ttl D]
/// [--processor-url URL [--processor-timeout D] [--recovery-after D]]`, with `DATABASE_URL` and
/// `PROCESSOR_URL` as the defaults of the URLs.
///
/// ```
/// use clap::Parser as _;
/// let args = fsm_suite::payments::ServiceArgs::try_parse_from(["payments", "--port", "8080"]).unwrap();
/// assert_eq!(args.port, 8080);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, clap::Parser)]
#[command(
    name = "payments",
    about = "The payment service: an HTTP API over the payment machine, with Idempotency-Key headers",
    long_about = None
)]
pub struct ServiceArgs {
    /// Where to listen on 127.0.0.1.
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// `sqlite:PATH`, `postgres://…` or `mysql://…` (default: the SQLite file
    /// `target/payments.db` of this repository).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// `text` (the default: for a person at a terminal) or `json` (one JSON object a line, for a
    /// log collector, with a line for each store operation's span when it closes).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// How long an authorization holds before the scheduler voids it: seconds, or a number
    /// with `s`, `m`, `h` or `d` (`7d`, the default).
    #[arg(long, default_value = "7d", value_parser = parse_ttl)]
    pub authorization_ttl: Duration,
    /// The card processor captures go through (`POST {url}/charges`); without one, a capture
    /// debits the account at once, as it always did.
    #[arg(long, env = "PROCESSOR_URL")]
    pub processor_url: Option<String>,
    /// How long a charge may take before it counts as unanswered (the payment stays
    /// `capturing`, and the next attempt uses the same key): a duration as for
    /// `--authorization-ttl`, or milliseconds with `ms` (`2s`, the default; `500ms`).
    #[arg(long, default_value = "2s", value_parser = parse_wait, requires = "processor_url")]
    pub processor_timeout: Duration,
    /// How long a payment stays `capturing` before the recovery worker makes its call again
    /// (`5s`, the default): longer than `--processor-timeout`.
    #[arg(long, default_value = "5s", value_parser = parse_wait, requires = "processor_url")]
    pub recovery_after: Duration,
    /// How long a request waits for a lock another request holds (the same payment, or its
    /// `Idempotency-Key` still in flight) before it answers `409` with `Retry-After: 1`, a
    /// duration as for `--authorization-ttl` (`500ms`, `2s`); without it, as long as the
    /// database lets it.
    #[arg(long, value_parser = parse_wait)]
    pub lock_wait: Option<Duration>,
}

/// How the service writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

/// A duration as `--authorization-ttl` takes it: seconds, or a number with `ms`, `s`, `m`, `h`
/// or `d`.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(fsm_suite::payments::parse_ttl("90"), Ok(Duration::from_secs(90)));
/// assert_eq!(fsm_suite::payments::parse_ttl("7d"), Ok(Duration::from_secs(7 * 86_400)));
/// assert_eq!(fsm_suite::payments::parse_ttl("250ms"), Ok(Duration::from_millis(250)));
/// assert!(fsm_suite::payments::parse_ttl("soon").is_err());
/// ```
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    if let Some(millis) = text.strip_suffix("ms") {
        let count: u64 =
            millis.parse().map_err(|_| format!("`{text}` is not a duration (like 500ms, 90, 30m or 7d)"))?;
        return Ok(Duration::from_millis(count));
    }
    let (number, unit) = match text.char_indices().last() {
        Some((at, unit @ ('s' | 'm' | 'h' | 'd'))) => (&text[..at], unit),
        _ => (text, 's'),
    };
    let seconds_per = match unit {
        'm' => 60,
        'h' => 3_600,
        'd' => 86_400,
        _ => 1,
    };
    let count: u64 =
        number.parse().map_err(|_| format!("`{text}` is not a duration (like 500ms, 90, 30m, 12h or 7d)"))?;
    count.checked_mul(seconds_per).map(Duration::from_secs).ok_or_else(|| format!("`{text}` is too long"))
}

/// A wait as `--processor-timeout`, `--recovery-after` and `--lock-wait` take it: a duration as
/// for [`parse_ttl`], above zero (a zero timeout would fail every charge, and PostgreSQL reads
/// a zero lock timeout as none at all).
///
/// ```
/// use std::time::Duration;
/// assert_eq!(fsm_suite::payments::parse_wait("500ms"), Ok(Duration::from_millis(500)));
/// assert!(fsm_suite::payments::parse_wait("0").is_err());
/// assert!(fsm_suite::payments::parse_wait("0ms").is_err());
/// ```
pub fn parse_wait(text: &str) -> Result<Duration, String> {
    match parse_ttl(text)? {
        Duration::ZERO => Err(format!("`{text}` is no wait: give a duration above zero (like 500ms or 2s)")),
        wait => Ok(wait),
    }
}

impl ServiceArgs {
    /// The arguments, parsed and checked across options, from the process's command line;
    /// on an error, clap's message and exit code.
    pub fn parse_checked() -> Self {
        match Self::try_parse_checked_from(std::env::args_os()) {
            Ok(args) => args,
            Err(error) => error.exit(),
        }
    }

    /// The arguments from `argv`, parsed, then checked across options: `--recovery-after`
    /// must be longer than `--processor-timeout`, or recovery would call again while the first
    /// call may still be answered.
    ///
    /// ```
    /// use fsm_suite::payments::ServiceArgs;
    /// let argv = ["payments", "--processor-url", "http://p", "--processor-timeout", "5s", "--recovery-after", "2s"];
    /// let error = ServiceArgs::try_parse_checked_from(argv).unwrap_err();
    /// assert!(error.to_string().contains("--recovery-after (2s) must be longer than --processor-timeout (5s)"));
    /// ```
    pub fn try_parse_checked_from<I, T>(argv: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        use clap::{CommandFactory as _, Parser as _};
        let args = Self::try_parse_from(argv)?;
        if args.processor().is_some() && args.recovery_after <= args.processor_timeout {
            let message = format!(
                "--recovery-after ({:?}) must be longer than --processor-timeout ({:?})",
                args.recovery_after, args.processor_timeout
            );
            return Err(Self::command().error(clap::error::ErrorKind::ArgumentConflict, message));
        }
        Ok(args)
    }

    /// The processor captures go through, if `--processor-url` (or `PROCESSOR_URL`) names one.
    pub fn processor(&self) -> Option<ProcessorSettings> {
        let url = self.processor_url.as_deref().filter(|url| !url.trim().is_empty())?;
        Some(ProcessorSettings::new(url).timeout(self.processor_timeout).recovery_after(self.recovery_after))
    }

    /// The database URL: the one given, else the SQLite file `payments.db` in `target_dir`
    /// (created if missing).
    pub fn database_url_or_file_in(&self, target_dir: &Path) -> std::io::Result<String> {
        match &self.database_url {
            Some(url) => Ok(url.clone()),
            None => {
                std::fs::create_dir_all(target_dir)?;
                Ok(format!("sqlite://{}?mode=rwc", target_dir.join("payments.db").display()))
            }
        }
    }
}

/// The URL without its password, for the log.
///
/// ```
/// assert_eq!(fsm_suite::payments::redacted("postgres://app:secret@db/pay"), "postgres://app:***@db/pay");
/// ```
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => match url[scheme + 3..at].split_once(':') {
            Some((user, _password)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
            None => url.to_owned(),
        },
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    #[test]
    fn flags_with_and_without_equals() {
        let args =
            ServiceArgs::try_parse_from(["payments", "--port=8081", "--database-url", "sqlite::memory:"]).unwrap();
        let week = Duration::from_secs(7 * 86_400);
        let url = Some("sqlite::memory:".to_owned());
        let expected = ServiceArgs {
            port: 8081,
            database_url: url,
            log_format: LogFormat::Text,
            authorization_ttl: week,
            processor_url: None,
            processor_timeout: Duration::from_secs(2),
            recovery_after: Duration::from_secs(5),
            lock_wait: None,
        };
        assert_eq!(args, expected);
        assert_eq!(args.processor(), None);
        let args = ServiceArgs::try_parse_from(["payments", "--authorization-ttl=15m"]).unwrap();
        assert_eq!(args.authorization_ttl, Duration::from_secs(900));
        let args = ServiceArgs::try_parse_from(["payments", "--lock-wait", "500ms"]).unwrap();
        assert_eq!(args.lock_wait, Some(Duration::from_millis(500)));
        let args = ServiceArgs::try_parse_from(["payments", "--database-url=postgres://x@h/db"]).unwrap();
        assert_eq!(args.port, 3000);
        assert_eq!(args.database_url_or_file_in(Path::new("/nonexistent")).unwrap(), "postgres://x@h/db");
    }

    #[test]
    fn log_format_text_or_json() {
        let args = ServiceArgs::try_parse_from(["payments", "--log-format", "json"]).unwrap();
        assert_eq!(args.log_format, LogFormat::Json);
        assert!(ServiceArgs::try_parse_from(["payments", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn a_processor_with_its_timeout_and_recovery() {
        let args = ServiceArgs::try_parse_from([
            "payments",
            "--processor-url",
            "http://127.0.0.1:4000/",
            "--processor-timeout",
            "500ms",
            "--recovery-after=2s",
        ])
        .unwrap();
        let settings = args.processor().expect("a processor");
        assert_eq!(settings.url, "http://127.0.0.1:4000/");
        assert_eq!((settings.timeout, settings.recovery_after), (Duration::from_millis(500), Duration::from_secs(2)));
        assert_eq!(settings.claim(), Duration::from_millis(3_500));
        let defaults = ServiceArgs::try_parse_from(["payments", "--processor-url", "http://p"]).unwrap();
        let defaults = defaults.processor().expect("a processor");
        assert_eq!((defaults.timeout, defaults.recovery_after), (Duration::from_secs(2), Duration::from_secs(5)));
    }

    #[test]
    fn bad_input_is_an_error_not_a_default() {
        for argv in [
            &["payments", "--port", "99999"][..],
            &["payments", "--port"],
            &["payments", "--colour"],
            &["payments", "extra"],
            &["payments", "--authorization-ttl", "soon"],
            &["payments", "--processor-url", "http://p", "--processor-timeout", "2 s"],
            &["payments", "--processor-timeout", "1s"],
            &["payments", "--processor-url", "http://p", "--processor-timeout", "0"],
            &["payments", "--processor-url", "http://p", "--recovery-after", "0ms"],
            &["payments", "--lock-wait", "0s"],
        ] {
            assert!(ServiceArgs::try_parse_from(argv).is_err(), "{argv:?}");
        }
    }

    #[test]
    fn recovery_must_wait_longer_than_a_call() {
        let argv = ["payments", "--processor-url", "http://p", "--processor-timeout", "3s", "--recovery-after", "3s"];
        assert!(ServiceArgs::try_parse_from(argv).is_ok(), "each option alone is fine");
        let error = ServiceArgs::try_parse_checked_from(argv).unwrap_err();
        assert_eq!(error.kind(), clap::error::ErrorKind::ArgumentConflict);
        assert!(
            error.to_string().contains("--recovery-after (3s) must be longer than --processor-timeout (3s)"),
            "{error}"
        );
        let argv =
            ["payments", "--processor-url", "http://p", "--processor-timeout", "500ms", "--recovery-after", "2s"];
        assert!(ServiceArgs::try_parse_checked_from(argv).is_ok());
        assert!(ServiceArgs::try_parse_checked_from(["payments"]).is_ok(), "no processor: nothing to check");
        let blank = ["payments", "--processor-url", " ", "--processor-timeout", "10s"];
        assert!(ServiceArgs::try_parse_checked_from(blank).is_ok(), "a blank URL is no processor");
    }

    #[test]
    fn without_a_url_the_service_uses_a_file_in_target() {
        let dir = std::env::temp_dir().join(format!("fsm-args-{}", std::process::id()));
        let args = ServiceArgs {
            port: 3000,
            database_url: None,
            log_format: LogFormat::Text,
            authorization_ttl: Duration::from_secs(60),
            processor_url: None,
            processor_timeout: Duration::from_secs(2),
            recovery_after: Duration::from_secs(5),
            lock_wait: None,
        };
        let url = args.database_url_or_file_in(&dir).unwrap();
        assert_eq!(url, format!("sqlite://{}?mode=rwc", dir.join("payments.db").display()));
        assert!(dir.is_dir());
        let _ = std::fs::remove_dir(&dir);
    }

    #[test]
    fn passwords_do_not_reach_the_log() {
        assert_eq!(redacted("mysql://root:pw@127.0.0.1:3306/test"), "mysql://root:***@127.0.0.1:3306/test");
        assert_eq!(redacted("mysql://root@127.0.0.1/test"), "mysql://root@127.0.0.1/test");
        assert_eq!(redacted("sqlite::memory:"), "sqlite::memory:");
    }
}
