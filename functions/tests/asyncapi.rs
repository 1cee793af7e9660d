//! The `asyncapi` command of the image's binary: deploy/asyncapi.yaml is what it prints, and
//! the document describes every example function with its payload's schema. (The official
//! AsyncAPI parser checks both in scripts/validate-asyncapi.sh.)

mod common;

use common::{assert_rendered, run, SHOP_FUNCTIONS};
use serde_json::Value;

const CHECKED_IN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/asyncapi.yaml");

fn render(env: &[(&str, &str)]) -> String {
    let output = run(&["asyncapi"], env);
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).expect("UTF-8")
}

#[test]
fn the_checked_in_document_is_what_the_command_prints() {
    let checked_in = std::fs::read_to_string(CHECKED_IN).expect("deploy/asyncapi.yaml");
    assert_rendered(
        "deploy/asyncapi.yaml",
        &checked_in,
        &render(&[]),
        "functions asyncapi",
        "./scripts/render-asyncapi.sh",
    );
}

#[test]
fn every_shop_function_receives_typed_json_on_its_subject() {
    let doc: Value = serde_norway::from_str(&render(&[])).expect("YAML");
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "functions");
    let operations = doc["operations"].as_object().expect("operations");
    let mut expected = SHOP_FUNCTIONS.to_vec();
    expected.insert(2, "check_stock");
    assert_eq!(operations.keys().collect::<Vec<_>>(), expected);
    let check = &doc["operations"]["check_stock"];
    assert_eq!(check["bindings"]["nats"]["queue"], "jetfn");
    assert_eq!(
        doc["components"]["messages"]["check_stock_reply"]["payload"]["title"],
        "StockLevel"
    );
    for name in SHOP_FUNCTIONS {
        assert_eq!(doc["operations"][name]["action"], "receive", "{name}");
        assert_eq!(
            doc["operations"][name]["bindings"]["nats"]["queue"], name,
            "{name}"
        );
        let message = &doc["components"]["messages"][name];
        assert_eq!(message["contentType"], "application/json", "{name}");
        // An order's own events are plain `OrderEvent`s; every other shop event is enveloped.
        let payload = if name == "order_status" {
            "OrderEvent"
        } else {
            "ShopEvent"
        };
        assert_eq!(message["payload"]["title"], payload, "{name}");
    }
    assert_eq!(
        doc["channels"]["shop.orders.created"]["address"],
        "shop.orders.created"
    );
    assert_eq!(doc["channels"]["shop.all"]["address"], "shop.>");
    let order = &doc["components"]["schemas"]["OrderCreated"];
    assert_eq!(order["properties"]["quantity"]["type"], "integer");
    assert_eq!(
        doc["components"]["messages"]["reserve_inventory"]["payload"]["properties"]["data"]
            ["allOf"][0]["$ref"],
        "#/components/schemas/OrderCreated"
    );
}

#[test]
fn the_document_covers_the_selected_functions_only() {
    let doc: Value =
        serde_norway::from_str(&render(&[("JETFN_FUNCTIONS", "audit_log")])).expect("YAML");
    let operations = doc["operations"].as_object().expect("operations");
    assert_eq!(operations.keys().collect::<Vec<_>>(), ["audit_log"]);
    let unknown = run(&["asyncapi"], &[("JETFN_FUNCTIONS", "nope")]);
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
}
