//! The OpenAPI 3.1 document of the IM JSON API, generated from the operation table and the request and
//! reply types' schemas (utoipa), served at `/v1/openapi.json`. Nothing in it is written by hand but
//! the error object and the security schemes.

use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

use super::events::LiveEvent;
use super::operations::{
    Access, Binary, Document, NoBody, Operation, RawBody, Visitor, other_successes, visit,
};
use super::params::Params;

fn add<T: ToSchema>(schemas: &mut Map<String, Value>) -> Value {
    let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
    T::schemas(&mut nested);
    let name = T::name().into_owned();
    nested.push((name.clone(), T::schema()));
    for (n, schema) in nested {
        schemas.insert(n, serde_json::to_value(schema).unwrap_or(Value::Null));
    }
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn is<A: 'static, B: 'static>() -> bool {
    std::any::TypeId::of::<A>() == std::any::TypeId::of::<B>()
}

struct Builder {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

impl Visitor for Builder {
    fn visit<O: Operation>(&mut self) {
        let r = O::ROUTE;
        let mut params = Vec::new();
        for (place, docs) in [("path", O::Path::params()), ("query", O::Query::params())] {
            for d in docs {
                let mut p = json!({"name": d.name, "in": place, "required": d.required || place == "path", "schema": d.schema});
                if !d.description.is_empty() {
                    p["description"] = json!(d.description);
                }
                params.push(p);
            }
        }
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let reply = if is::<O::Reply, Binary>() {
            let content: Map<String, Value> = super::operations::UPLOAD_CONTENT_TYPES
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        json!({"schema": {"type": "string", "format": "binary"}}),
                    )
                })
                .collect();
            json!({"description": "the file, with the Content-Type it was uploaded with", "content": content})
        } else if is::<O::Reply, Document>() {
            json!({"description": "this document", "content": {"application/json": {"schema": {"type": "object"}}}})
        } else {
            let schema = add::<O::Reply>(&mut self.schemas);
            json!({"description": "success", "content": {"application/json": {"schema": schema}}})
        };
        let mut responses = Map::new();
        responses.insert(r.status.to_string(), reply.clone());
        for (status, description) in other_successes(r.op) {
            let mut also = reply.clone();
            also["description"] = json!(description);
            responses.insert(status.to_string(), also);
        }
        responses.insert("4XX".into(), error.clone());
        responses.insert("503".into(), json!({"description": "the database or logic is unavailable; retry", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}));
        let mut op = json!({
            "operationId": r.op,
            "summary": r.summary,
            "tags": [r.tag],
            "parameters": params,
            "responses": responses,
        });
        match r.access {
            Access::Login => op["security"] = json!([{"bearer": []}]),
            Access::Trusted => op["security"] = json!([{"apiKey": []}]),
            Access::Public => {}
        }
        if is::<O::Body, RawBody>() {
            op["requestBody"] = json!({"required": true, "content": {"*/*": {"schema": {"type": "string", "format": "binary"}}}});
        } else if !is::<O::Body, NoBody>() {
            let schema = add::<O::Body>(&mut self.schemas);
            op["requestBody"] =
                json!({"required": true, "content": {"application/json": {"schema": schema}}});
        }
        let item = self
            .paths
            .entry(r.path.to_string())
            .or_insert_with(|| json!({}));
        item[r.method.to_ascii_lowercase()] = op;
    }
}

/// The whole document.
pub fn document() -> Value {
    let mut b = Builder {
        paths: Map::new(),
        schemas: Map::new(),
    };
    visit(&mut b);
    add::<LiveEvent>(&mut b.schemas);
    b.schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["error"], "properties": {"error": {"type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                "retry_after_secs": {"type": "integer", "description": "rate_limited: seconds to wait (also the Retry-After header)"}}}}}),
    );
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "imcloud IM API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, friends, groups, chat and the message box. Errors are {\"error\":{\"code\",\"message\"}}. Live events (the LiveEvent schema) arrive on the websocket (see docs/im.md)."
        },
        "paths": b.paths,
        "components": {
            "schemas": b.schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": "a login token (POST /v1/sessions)"},
                "apiKey": {"type": "http", "scheme": "bearer", "description": "IMCLOUD_API_KEY, for trusted backends"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::im::operations::ROUTES;

    #[test]
    fn every_route_and_referenced_schema_is_in_the_document() {
        let doc = document();
        for r in ROUTES {
            assert!(
                doc["paths"][r.path][r.method.to_ascii_lowercase()].is_object(),
                "{} {}",
                r.method,
                r.path
            );
        }
        let text = doc.to_string();
        for piece in text.split("#/components/schemas/").skip(1) {
            let name: String = piece
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            assert!(
                doc["components"]["schemas"][&name].is_object(),
                "{name} is referenced but missing"
            );
        }
        // Constraints come from the types.
        let nickname = &doc["components"]["schemas"]["RegisterReq"]["properties"]["nickname"];
        let nick = if nickname["$ref"].is_string() {
            let n = nickname["$ref"]
                .as_str()
                .unwrap_or("")
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_string();
            doc["components"]["schemas"][&n].clone()
        } else {
            nickname.clone()
        };
        assert_eq!(nick["maxLength"], 32, "{nick}");
        assert_eq!(nick["minLength"], 1, "{nick}");
    }
}
