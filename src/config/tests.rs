//! The configuration: defaults, errors that name their key, paths beside the file.

use super::*;

fn check(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/beskedhent/config.toml"))
}

#[test]
fn a_source_name_never_holds_a_cpr_number() {
    for name in [
        "a-0101901234",
        "b.010190-1234",
        "import_0101901234",
        "a0101701234",
        "x010170.1234",
        "q01-01-70-12-34",
        // Against the character rule too: the digits are not shown by that error either.
        "a0101701234 ",
        "a010170\u{a0}1234",
    ] {
        let error = check_source_name("--source", name)
            .expect_err(name)
            .to_string();
        assert!(error.contains("CPR"), "{error}");
        assert!(!error.contains("1234"), "masked: {error}");
    }
    check_source_name("--source", "feed-2026").expect("a plain name");
    check_source_name("--source", "feed-2026-11-28").expect("a date");
    check_source_name("--source", "a9999999999").expect("no date");
    check_source_name("--source", "import").expect("the default");
}

#[test]
fn a_notify_program_must_be_an_absolute_path() {
    for relative in ["./alert.sh", "bin/alert", "logger", "../x"] {
        let error = check(&format!(
            "database = \"replica.db\"\n[notify]\ncommand = [\"{relative}\", \"--flag\"]\n"
        ))
        .expect_err("relative");
        assert!(format!("{error:#}").contains("absolute path"), "{error:#}");
    }
    let config = check("database = \"replica.db\"\n[notify]\ncommand = [\"/usr/bin/logger\"]\n")
        .expect("valid");
    assert_eq!(config.notify.expect("notify").command, ["/usr/bin/logger"]);
}

#[test]
fn minimal_config_has_defaults() {
    let config = check("database = \"replica.db\"").expect("valid");
    assert_eq!(config.database, Path::new("/etc/beskedhent/replica.db"));
    assert_eq!(config.max_message_bytes, DEFAULT_MAX_MESSAGE_BYTES);
    assert!(config.registrations.is_empty());
}

#[test]
fn absolute_database_path_is_kept() {
    let config = check("database = \"/var/lib/b/r.db\"").expect("valid");
    assert_eq!(config.database, Path::new("/var/lib/b/r.db"));
}

#[test]
fn registration_types_are_read() {
    let config = check(
        r#"
database = "r.db"
[types.nemsms_registration]
beskedtype = " B "
registered = ["r1", "r2"]
deregistered = ["d1"]
"#,
    )
    .expect("valid");
    assert_eq!(
        config.registrations,
        [RegistrationType {
            channel: Channel::NemSms,
            beskedtype: "B".into(),
            registered: vec!["r1".into(), "r2".into()],
            deregistered: vec!["d1".into()],
        }]
    );
}

#[test]
fn errors_name_the_key() {
    let cases = [
        ("database = \"r.db\"\ncolour = 1", "unknown field `colour`"),
        (
            "database = \"r.db\"\n[types.fax]\nbeskedtype = \"x\"",
            "unknown field `fax`",
        ),
        (
            "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\nregisterd = []",
            "unknown field `registerd`",
        ),
        ("max_message_bytes = 5", "missing field `database`"),
        (
            "database = \"r.db\"\nmax_message_bytes = 0",
            "`max_message_bytes` must be between 1 and 33554432",
        ),
        (
            "database = \"r.db\"\nwait_for_replica_seconds = 0",
            "`wait_for_replica_seconds` must be between 1 and 86400 (a day), got 0",
        ),
        (
            "database = \"r.db\"\nwait_for_replica_seconds = 86401",
            "`wait_for_replica_seconds` must be between 1 and 86400 (a day), got 86401",
        ),
        (
            "database = \"r.db\"\nmax_message_bytes = 33554433",
            "`max_message_bytes` must be between 1 and 33554432",
        ),
        (
            "database = \"r.db\"\nmax_message_bytes = \"big\"",
            "line 2, column 21 (`max_message_bytes`): invalid type",
        ),
        (
            "database = \"r.db\"\n[notify]\ncommand = [\"x\"]\nheader_value = \"Bearer s3cret\"",
            "line 4, column 1 (`notify.header_value`): unknown field `header_value`",
        ),
        ("database = \"\"", "`database` is empty"),
        (
            "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"d2bed63c-4853-4008-b6e0-a74c15b15fbf\"",
            "built in",
        ),
        (
            "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\nregistered = [\"a\"]\nderegistered = [\"A\"]",
            "in both",
        ),
        (
            "database = \"r.db\"\n[types.nemsms_registration]\nbeskedtype = \"x\"\n[types.digitalpost_registration]\nbeskedtype = \"X\"",
            "are the same",
        ),
        ("database = ", "line 1"),
    ];
    for (text, expected) in cases {
        let error = format!("{:#}", check(text).expect_err(text));
        assert!(
            error.contains(expected),
            "{text:?}: got `{error}`, want `{expected}`"
        );
        assert!(!error.contains("s3cret"), "{error}");
    }
}

#[test]
fn missing_file_says_how_to_point_at_one() {
    let error = Config::load(Path::new("/nonexistent/config.toml")).expect_err("missing");
    assert!(error.to_string().contains("BESKEDHENT_CONFIG"), "{error}");
}
