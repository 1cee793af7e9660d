//! The README's first example is the code of the simplest example function, so they cannot drift.

#[test]
fn readme_shows_the_notification_function_verbatim() {
    let readme = include_str!("../../README.md");
    let source = include_str!("../src/notifications.rs");
    let handler = &source[source.find("#[event_handler").expect("a handler")..];
    assert!(
        readme.contains(handler.trim_end()),
        "README.md must contain functions/src/notifications.rs from #[event_handler] on"
    );
    for line in source.lines().filter(|l| l.starts_with("use ")) {
        assert!(readme.contains(line), "README.md lacks `{line}`");
    }
}

#[test]
fn readme_shows_the_request_function_verbatim() {
    let readme = include_str!("../../README.md");
    let source = include_str!("../src/stock.rs");
    let body = &source[source.find("use ").expect("imports")..];
    assert!(
        readme.contains(body.trim_end()),
        "README.md must contain functions/src/stock.rs from its imports on"
    );
}

#[test]
fn readme_shows_the_shops_tests_verbatim() {
    let readme = include_str!("../../README.md");
    let source = include_str!("../src/tests.rs");
    assert!(
        readme.contains(source.trim_end()),
        "README.md must contain functions/src/tests.rs whole"
    );
}
