//! The README's first example is the code of the simplest example function, and the docs pages
//! show the example functions and tests as they are, so none of them can drift.

const README: &str = include_str!("../../README.md");
const WRITING_FUNCTIONS: &str = include_str!("../../docs/writing-functions.md");
const TRIGGERS: &str = include_str!("../../docs/triggers.md");
const TESTING: &str = include_str!("../../docs/testing.md");

fn shows_the_notification_function(page: &str, name: &str) {
    let source = include_str!("../src/notifications.rs");
    let handler = &source[source.find("#[event_handler").expect("a handler")..];
    assert!(
        page.contains(handler.trim_end()),
        "{name} must contain functions/src/notifications.rs from #[event_handler] on"
    );
    for line in source.lines().filter(|l| l.starts_with("use ")) {
        assert!(page.contains(line), "{name} lacks `{line}`");
    }
}

#[test]
fn readme_shows_the_notification_function_verbatim() {
    shows_the_notification_function(README, "README.md");
}

#[test]
fn writing_functions_page_shows_the_notification_function_verbatim() {
    shows_the_notification_function(WRITING_FUNCTIONS, "docs/writing-functions.md");
}

#[test]
fn triggers_page_shows_the_request_function_verbatim() {
    let source = include_str!("../src/stock.rs");
    let body = &source[source.find("use ").expect("imports")..];
    assert!(
        TRIGGERS.contains(body.trim_end()),
        "docs/triggers.md must contain functions/src/stock.rs from its imports on"
    );
}

#[test]
fn testing_page_shows_the_shops_tests_verbatim() {
    let source = include_str!("../src/tests.rs");
    assert!(
        TESTING.contains(source.trim_end()),
        "docs/testing.md must contain functions/src/tests.rs whole"
    );
}

/// Every relative link of the README and the docs pages names a file that exists.
#[test]
fn relative_links_name_files_that_exist() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let pages = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .map(|entry| entry.expect("entry").path())
        .chain([root.join("README.md")]);
    for page in pages {
        let text = std::fs::read_to_string(&page).expect("page");
        let dir = page.parent().expect("a directory");
        for target in text
            .split("](")
            .skip(1)
            .filter_map(|rest| rest.split(')').next())
        {
            if target.starts_with("http") || target.starts_with('#') {
                continue;
            }
            let file = target.split('#').next().unwrap_or(target);
            let path = dir.join(file);
            assert!(
                path.exists(),
                "{} links to `{target}`, which does not exist",
                page.display()
            );
        }
    }
}
