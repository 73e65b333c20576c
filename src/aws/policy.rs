//! Policy documents: build them as JSON and compare them by meaning, because
//! AWS echoes policies back reformatted (one-element arrays collapsed, keys
//! reordered, IAM URL-encodes them).

use serde_json::Value;

/// True when two policy documents say the same thing.
pub fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => normalize(a) == normalize(b),
        _ => false,
    }
}

/// IAM returns policy documents URL-encoded and API Gateway with its quotes
/// backslash-escaped (`{\"Version\":...}`, which the Terraform provider
/// unquotes the same way); others return them as written.
fn parse(doc: &str) -> Option<Value> {
    serde_json::from_str(doc)
        .ok()
        .or_else(|| {
            let decoded = percent_encoding::percent_decode_str(doc)
                .decode_utf8()
                .ok()?;
            serde_json::from_str(&decoded).ok()
        })
        .or_else(|| {
            let unescaped: String = serde_json::from_str(&format!("\"{doc}\"")).ok()?;
            serde_json::from_str(&unescaped).ok()
        })
}

/// A document's statements: AWS writes a single statement as an object,
/// several as an array.
pub fn statements(doc: &Value) -> Vec<&Value> {
    match &doc["Statement"] {
        Value::Array(s) => s.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => Vec::new(),
    }
}

/// Whether a resource policy (a function's, as Lambda's GetPolicy answers
/// it) has the statement `sid` that lets `service` act for `source_arn`
/// only: what AddPermission with a principal and a SourceArn writes. A
/// policy that does not parse grants nothing.
pub fn grants_service(doc: &str, sid: &str, service: &str, source_arn: &str) -> bool {
    let doc: Value = serde_json::from_str(doc).unwrap_or_default();
    statements(&doc).iter().any(|s| {
        s["Sid"] == sid
            && s["Effect"] == "Allow"
            && s["Principal"]["Service"] == service
            && s["Condition"]["ArnLike"]["AWS:SourceArn"] == source_arn
    })
}

/// The regions the ARNs of a policy document name (`arn:<partition>:
/// <service>:<region>:...`); global ARNs (IAM, S3 buckets) name none. Empty
/// for a document that does not parse.
pub fn regions(doc: &str) -> std::collections::BTreeSet<String> {
    fn walk(v: &Value, out: &mut std::collections::BTreeSet<String>) {
        match v {
            Value::String(s) if s.starts_with("arn:") => {
                if let Some(region) = s.split(':').nth(3).filter(|r| !r.is_empty()) {
                    out.insert(region.to_owned());
                }
            }
            Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            Value::Object(map) => map.values().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut out = std::collections::BTreeSet::new();
    if let Some(v) = parse(doc) {
        walk(&v, &mut out);
    }
    out
}

fn normalize(v: Value) -> Value {
    match v {
        // Keys sorted whatever the map keeps (serde_json's preserve_order is on
        // in this build), so that the array sort below sees one spelling.
        Value::Object(map) => Value::Object(
            map.into_iter()
                // `Version` is often omitted on one side and defaulted on the other.
                .filter(|(k, _)| k != "Version")
                .map(|(k, v)| match (k.as_str(), v) {
                    // `"Principal": "*"` and `{"AWS": "*"}` mean the same.
                    ("Principal", Value::String(s)) if s == "*" => {
                        (k, serde_json::json!({ "AWS": "*" }))
                    }
                    (_, v) => (k, normalize(v)),
                })
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        Value::Array(items) => {
            let mut items: Vec<Value> = items.into_iter().map(normalize).collect();
            if items.len() == 1 {
                return items.pop().expect("one item");
            }
            items.sort_by_key(|a| a.to_string());
            Value::Array(items)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_service_grant_is_its_statement_for_that_principal_and_source_only() {
        let arn = "arn:aws:events:us-east-1:123456789012:rule/r";
        let statement = |sid: &str, service: &str, source: &str| {
            serde_json::json!({
                "Sid": sid, "Effect": "Allow",
                "Principal": {"Service": service},
                "Action": "lambda:InvokeFunction",
                "Condition": {"ArnLike": {"AWS:SourceArn": source}}
            })
        };
        let events = "events.amazonaws.com";
        // Lambda answers one statement as an object, several as an array.
        let one = serde_json::json!({"Statement": statement("s", events, arn)}).to_string();
        assert!(grants_service(&one, "s", events, arn));
        let many = serde_json::json!({"Statement": [
            statement("other", events, arn),
            statement("s", events, arn),
        ]})
        .to_string();
        assert!(grants_service(&many, "s", events, arn));
        for wrong in [
            statement("s", "sns.amazonaws.com", arn),
            statement(
                "s",
                events,
                "arn:aws:events:us-east-1:123456789012:rule/other",
            ),
            statement("t", events, arn),
        ] {
            let doc = serde_json::json!({"Statement": [wrong]}).to_string();
            assert!(!grants_service(&doc, "s", events, arn), "{doc}");
        }
        assert!(!grants_service("not json", "s", events, arn));
    }

    #[test]
    fn api_gateways_escaped_policy_reads_as_the_document_it_holds() {
        // GetRestApi's `policy`, as API Gateway sends it.
        let echoed = r#"{\"Version\":\"2012-10-17\",\"Statement\":[{\"Effect\":\"Allow\",\"Principal\":\"*\",\"Action\":\"execute-api:Invoke\",\"Resource\":\"arn:aws:execute-api:us-east-1:123456789012:abc/*\"}]}"#;
        let wanted = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"execute-api:Invoke","Resource":"arn:aws:execute-api:us-east-1:123456789012:abc/*"}]}"#;
        assert!(same(echoed, wanted));
        assert!(!same(echoed, &wanted.replace("Allow", "Deny")));
    }

    #[test]
    fn equal_policies_compare_equal_whatever_the_formatting() {
        let written = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["logs:PutLogEvents"],"Resource":["b","a"]}]}"#;
        let echoed = r#"{"Statement":{"Resource":["a","b"],"Action":"logs:PutLogEvents","Effect":"Allow"},"Version":"2012-10-17"}"#;
        assert!(same(written, echoed));
    }

    #[test]
    fn url_encoded_iam_documents_are_decoded() {
        let written =
            r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#;
        let encoded = "%7B%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22s3%3AGetObject%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D";
        assert!(same(written, encoded));
    }

    #[test]
    fn a_wildcard_principal_is_the_same_in_both_spellings() {
        let a =
            r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}"#;
        let b = r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"s3:*","Resource":"*"}]}"#;
        assert!(same(a, b));
    }

    #[test]
    fn statements_compare_whatever_the_order_of_their_keys() {
        let written = r#"{"Statement":[
            {"Sid":"A","Effect":"Deny","Action":"s3:*","Resource":"x","Condition":{"Bool":{"k":"false"}}},
            {"Sid":"B","Effect":"Deny","Action":"s3:PutObject","Resource":"x/*"}]}"#;
        let echoed = r#"{"Statement":[
            {"Resource":"x","Condition":{"Bool":{"k":"false"}},"Action":"s3:*","Effect":"Deny","Sid":"A"},
            {"Resource":"x/*","Action":"s3:PutObject","Effect":"Deny","Sid":"B"}]}"#;
        assert!(same(written, echoed));
    }

    #[test]
    fn the_regions_a_policy_names_are_those_of_its_arns() {
        let doc = r#"{"Statement":[
            {"Effect":"Allow","Action":"logs:PutLogEvents","Resource":"arn:aws:logs:us-west-2:1:log-group:/x:*"},
            {"Effect":"Allow","Action":"s3:PutObject","Resource":["arn:aws:s3:::bucket/*","*"]},
            {"Effect":"Allow","Action":"kms:Decrypt","Resource":"arn:aws:kms:us-west-2:1:key/k",
             "Condition":{"StringEquals":{"kms:ViaService":"s3.us-west-2.amazonaws.com"}}}]}"#;
        let encoded =
            percent_encoding::utf8_percent_encode(doc, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        assert_eq!(
            regions(&encoded).into_iter().collect::<Vec<_>>(),
            ["us-west-2"]
        );
        assert!(regions("not json").is_empty());
    }

    #[test]
    fn different_policies_differ() {
        let a = r#"{"Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"a"}]}"#;
        let b = r#"{"Statement":[{"Effect":"Deny","Action":"s3:GetObject","Resource":"a"}]}"#;
        assert!(!same(a, b));
        assert!(!same(a, "not json"));
    }
}
