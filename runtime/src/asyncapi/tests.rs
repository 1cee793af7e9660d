use super::*;

fn function(
    name: &str,
    subject: &str,
    kind: PayloadKind,
    schema: Option<fn() -> Value>,
) -> Function {
    Function {
        reply: None,
        name: name.to_owned(),
        subject: subject.to_owned(),
        payload: PayloadSpec {
            type_name: "shop::ShopEvent<shop::OrderCreated>",
            kind,
            schema,
        },
    }
}

fn order_schema() -> Value {
    json!({
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": "Order",
        "type": "object",
        "properties": { "line": { "$ref": "#/components/schemas/Line" } },
        "components": { "schemas": { "Line": { "type": "object" } } },
    })
}

fn document(functions: &[Function]) -> Value {
    let yaml = render("shop", "1.2.3", functions).expect("renders");
    serde_norway::from_str(&yaml).expect("valid YAML")
}

#[test]
fn a_channel_per_subject_and_an_operation_and_message_per_function() {
    let doc = document(&[
        function(
            "reserve",
            "shop.orders.created",
            PayloadKind::Json,
            Some(order_schema),
        ),
        function("audit", "shop.>", PayloadKind::Json, None),
        function(
            "also_reserve",
            "shop.orders.created",
            PayloadKind::Text,
            None,
        ),
        function("raw", "files.*.raw", PayloadKind::Bytes, None),
    ]);
    assert_eq!(doc["asyncapi"], "3.0.0");
    assert_eq!(doc["info"]["title"], "shop");
    assert_eq!(doc["info"]["version"], "1.2.3");
    let channels = doc["channels"].as_object().expect("channels");
    assert_eq!(
        channels.keys().collect::<Vec<_>>(),
        ["files.star.raw", "shop.all", "shop.orders.created"]
    );
    assert_eq!(doc["channels"]["shop.all"]["address"], "shop.>");
    let shared = doc["channels"]["shop.orders.created"]["messages"]
        .as_object()
        .expect("messages");
    assert_eq!(
        shared.keys().collect::<Vec<_>>(),
        ["also_reserve", "reserve"]
    );
    assert_eq!(shared["reserve"]["$ref"], "#/components/messages/reserve");

    let reserve = &doc["operations"]["reserve"];
    assert_eq!(reserve["action"], "receive");
    assert_eq!(reserve["channel"]["$ref"], "#/channels/shop.orders.created");
    assert_eq!(
        reserve["messages"][0]["$ref"],
        "#/channels/shop.orders.created/messages/reserve"
    );
    assert_eq!(
        reserve["bindings"]["nats"],
        json!({ "queue": "reserve", "bindingVersion": "0.1.0" })
    );

    let messages = &doc["components"]["messages"];
    assert_eq!(messages["reserve"]["contentType"], "application/json");
    assert_eq!(messages["reserve"]["title"], "ShopEvent<OrderCreated>");
    assert_eq!(messages["also_reserve"]["contentType"], "text/plain");
    assert_eq!(messages["also_reserve"]["payload"]["type"], "string");
    assert_eq!(messages["raw"]["contentType"], "application/octet-stream");
    assert_eq!(messages["raw"]["payload"]["format"], "binary");
}

#[test]
fn json_schemas_keep_their_refs_and_share_definitions_under_components() {
    let doc = document(&[
        function("typed", "a.b", PayloadKind::Json, Some(order_schema)),
        function("untyped", "a.c", PayloadKind::Json, None),
        function("proto", "a.d", PayloadKind::Protobuf, None),
    ]);
    let typed = &doc["components"]["messages"]["typed"]["payload"];
    assert_eq!(typed["title"], "Order");
    assert_eq!(
        typed["properties"]["line"]["$ref"],
        "#/components/schemas/Line"
    );
    assert!(typed.get("$schema").is_none() && typed.get("components").is_none());
    assert_eq!(doc["components"]["schemas"]["Line"]["type"], "object");
    let untyped = &doc["components"]["messages"]["untyped"]["payload"];
    assert!(untyped.get("type").is_none(), "untyped: {untyped}");
    let proto = &doc["components"]["messages"]["proto"];
    assert_eq!(proto["contentType"], "application/x-protobuf");
}

#[test]
fn the_same_functions_give_the_same_bytes() {
    let functions = [
        function("b", "x.y", PayloadKind::Json, None),
        function("a", "x.z", PayloadKind::Text, None),
    ];
    let once = render("t", "1", &functions).expect("renders");
    let reversed = [functions[1].clone(), functions[0].clone()];
    assert_eq!(once, render("t", "1", &reversed).expect("renders"));
}

#[test]
fn channel_ids_spell_wildcards_and_stay_unique() {
    assert_eq!(channel_id("a.*.>"), "a.star.all");
    let mut taken = BTreeMap::new();
    taken.insert("a.all".to_owned(), Value::Null);
    assert_eq!(unique("a.all".to_owned(), &taken), "a.all-2");
    assert_eq!(unique("b".to_owned(), &taken), "b");
}

#[test]
fn short_type_names_drop_module_paths() {
    assert_eq!(
        short_type_name("functions::ShopEvent<alloc::vec::Vec<functions::Line>>"),
        "ShopEvent<Vec<Line>>"
    );
    assert_eq!(short_type_name("bytes::bytes::Bytes"), "Bytes");
    assert_eq!(
        short_type_name("(u32, alloc::string::String)"),
        "(u32, String)"
    );
}

#[test]
fn a_request_function_has_a_reply_on_a_dynamic_channel() {
    let mut check = function("check_stock", "inventory.check", PayloadKind::Json, None);
    check.reply = Some(PayloadSpec {
        type_name: "shop::StockLevel",
        kind: PayloadKind::Json,
        schema: None,
    });
    let doc = document(&[check]);
    let operation = &doc["operations"]["check_stock"];
    assert_eq!(operation["action"], "receive");
    assert_eq!(operation["bindings"]["nats"]["queue"], "jetfn");
    assert_eq!(
        operation["reply"]["channel"]["$ref"],
        "#/channels/check_stock.reply"
    );
    assert_eq!(
        operation["reply"]["messages"][0]["$ref"],
        "#/channels/check_stock.reply/messages/check_stock_reply"
    );
    assert!(doc["channels"]["check_stock.reply"]["address"].is_null());
    assert_eq!(
        doc["components"]["messages"]["check_stock_reply"]["title"],
        "StockLevel"
    );
}
