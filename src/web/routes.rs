//! The HTTP/JSON route table, read from the `google.api.http` options in the
//! gateway's own descriptors: the routes are declared once, in the proto.
//!
//! Templates take the subset of Google's path template syntax the protos
//! use: literal segments, single-segment variables (`{stream}`), and a
//! custom verb on the last segment (`…/messages:batch`).

use percent_encoding::percent_decode_str;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, MethodDescriptor, Value};
use tonic::codegen::http::Method;

/// The option the routes are read from.
const HTTP_OPTION: &str = "google.api.http";

/// Why the route table could not be built (a proto that declares a route
/// the transcoder cannot serve; caught by the unit tests).
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The descriptors do not decode.
    #[error("cannot read the gateway's descriptors: {0}")]
    Descriptors(#[from] prost_reflect::DescriptorError),
    /// A template uses syntax the transcoder does not take.
    #[error("{method}: unsupported path template {template:?}: {why}")]
    Template {
        /// The RPC that declares it.
        method: String,
        /// The template.
        template: String,
        /// What is not supported.
        why: &'static str,
    },
}

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// Must equal the request's segment.
    Literal(String),
    /// Binds the request's segment to this request field (dotted path).
    Variable(String),
}

/// Where the request body goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyRule {
    /// No body: every field comes from the path and the query.
    None,
    /// `body: "*"`: the body is the request message.
    Whole,
}

/// One HTTP binding of one RPC.
#[derive(Debug, Clone)]
pub struct Route {
    http_method: Method,
    template: String,
    segments: Vec<Segment>,
    verb: Option<String>,
    /// Where the body goes.
    pub body: BodyRule,
    /// The RPC it calls.
    pub rpc: MethodDescriptor,
}

impl Route {
    /// The gRPC path of the RPC, `/package.Service/Method`.
    pub fn grpc_path(&self) -> String {
        format!(
            "/{}/{}",
            self.rpc.parent_service().full_name(),
            self.rpc.name()
        )
    }

    /// The HTTP method.
    pub fn http_method(&self) -> &Method {
        &self.http_method
    }

    /// The path template as declared, e.g. `/v1/streams/{stream}`.
    pub fn template(&self) -> &str {
        &self.template
    }

    /// The request message type.
    pub fn input(&self) -> MessageDescriptor {
        self.rpc.input()
    }

    /// The variables `path` binds, as (field path, decoded value), when it
    /// matches this route's template.
    fn bind(&self, path: &[&str]) -> Option<Vec<(String, String)>> {
        if path.len() != self.segments.len() {
            return None;
        }
        let mut bound = Vec::new();
        for (index, (segment, raw)) in self.segments.iter().zip(path).enumerate() {
            let mut raw = *raw;
            if index + 1 == path.len()
                && let Some(verb) = &self.verb
            {
                raw = raw.strip_suffix(verb.as_str())?.strip_suffix(':')?;
            }
            let value = percent_decode_str(raw).decode_utf8().ok()?;
            match segment {
                Segment::Literal(literal) if *literal == value => {}
                Segment::Literal(_) => return None,
                Segment::Variable(_) if value.is_empty() => return None,
                Segment::Variable(field) => bound.push((field.clone(), value.into_owned())),
            }
        }
        Some(bound)
    }
}

/// What the table says about a request.
#[derive(Debug)]
pub enum Lookup<'a> {
    /// This route serves it, with these path variables bound.
    Found(&'a Route, Vec<(String, String)>),
    /// The path exists, but not for this HTTP method; these methods it has.
    MethodNotAllowed(Vec<Method>),
    /// No route has this path.
    NotFound,
}

/// Every HTTP binding the descriptors declare.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
}

impl Routes {
    /// Reads the routes of every service in `pool`.
    pub fn from_pool(pool: &DescriptorPool) -> Result<Self, RouteError> {
        let mut routes = Vec::new();
        let Some(option) = pool.get_extension_by_name(HTTP_OPTION) else {
            return Ok(Self { routes });
        };
        for service in pool.services() {
            for rpc in service.methods() {
                let options = rpc.options();
                if !options.has_extension(&option) {
                    continue;
                }
                if let Value::Message(rule) = &*options.get_extension(&option) {
                    add_rule(&mut routes, &rpc, rule, true)?;
                }
            }
        }
        // A template with a verb is more specific than one whose last
        // variable would swallow `name:verb`.
        routes.sort_by_key(|route| route.verb.is_none());
        Ok(Self { routes })
    }

    /// Adds `GET path` (literal segments only) for `rpc`, taking no body.
    pub fn add_get(&mut self, path: &str, rpc: MethodDescriptor) {
        let segments = path
            .trim_start_matches('/')
            .split('/')
            .map(|segment| Segment::Literal(segment.to_owned()))
            .collect();
        self.routes.push(Route {
            http_method: Method::GET,
            template: path.to_owned(),
            segments,
            verb: None,
            body: BodyRule::None,
            rpc,
        });
    }

    /// Every route, in matching order.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter()
    }

    /// The route for `method` on `path` (the request's raw, still
    /// percent-encoded path).
    pub fn lookup(&self, method: &Method, path: &str) -> Lookup<'_> {
        let Some(rest) = path.strip_prefix('/') else {
            return Lookup::NotFound;
        };
        let segments: Vec<&str> = rest.split('/').collect();
        let mut allowed = Vec::new();
        for route in &self.routes {
            let Some(bound) = route.bind(&segments) else {
                continue;
            };
            if route.http_method == method {
                return Lookup::Found(route, bound);
            }
            if !allowed.contains(&route.http_method) {
                allowed.push(route.http_method.clone());
            }
        }
        if allowed.is_empty() {
            Lookup::NotFound
        } else {
            Lookup::MethodNotAllowed(allowed)
        }
    }
}

/// Adds the binding `rule` declares for `rpc`, and its additional bindings.
fn add_rule(
    routes: &mut Vec<Route>,
    rpc: &MethodDescriptor,
    rule: &DynamicMessage,
    top_level: bool,
) -> Result<(), RouteError> {
    let error = |template: &str, why| RouteError::Template {
        method: rpc.full_name().to_owned(),
        template: template.to_owned(),
        why,
    };
    let pattern = [
        ("get", Method::GET),
        ("put", Method::PUT),
        ("post", Method::POST),
        ("delete", Method::DELETE),
        ("patch", Method::PATCH),
    ]
    .into_iter()
    .find_map(|(field, method)| {
        let template = string_field(rule, field)?;
        Some((method, template))
    });
    if let Some((http_method, template)) = pattern {
        let (segments, verb) = parse_template(&template).map_err(|why| error(&template, why))?;
        let body = match string_field(rule, "body").as_deref() {
            None | Some("") => BodyRule::None,
            Some("*") => BodyRule::Whole,
            Some(_) => return Err(error(&template, "only body \"*\" or none is supported")),
        };
        routes.push(Route {
            http_method,
            template,
            segments,
            verb,
            body,
            rpc: rpc.clone(),
        });
    }
    if let Some(additional) = rule.get_field_by_name("additional_bindings")
        && let Value::List(bindings) = &*additional
    {
        for binding in bindings {
            if let Value::Message(binding) = binding {
                if !top_level {
                    return Err(error("", "additional bindings cannot nest"));
                }
                add_rule(routes, rpc, binding, false)?;
            }
        }
    }
    Ok(())
}

/// The non-empty string field `name` of `message`.
fn string_field(message: &DynamicMessage, name: &str) -> Option<String> {
    match &*message.get_field_by_name(name)? {
        Value::String(value) if !value.is_empty() => Some(value.clone()),
        _ => None,
    }
}

/// Splits `/a/{b}/c:verb` into segments and the verb.
fn parse_template(template: &str) -> Result<(Vec<Segment>, Option<String>), &'static str> {
    let rest = template
        .strip_prefix('/')
        .ok_or("a template starts with '/'")?;
    let (path, verb) = match rest.rsplit_once(':') {
        Some((path, verb)) if !verb.contains(['/', '}']) => (path, Some(verb.to_owned())),
        _ => (rest, None),
    };
    let segments = path
        .split('/')
        .map(|segment| match segment.strip_prefix('{') {
            Some(variable) => {
                let field = variable.strip_suffix('}').ok_or("an unclosed variable")?;
                let field = field.strip_suffix("=*").unwrap_or(field);
                if field.is_empty() || field.contains(['=', '*', '{']) {
                    return Err("only single-segment variables are supported");
                }
                Ok(Segment::Variable(field.to_owned()))
            }
            None if segment.is_empty() || segment.contains(['*', '{', '}']) => {
                Err("only literal segments and {variables} are supported")
            }
            None => Ok(Segment::Literal(segment.to_owned())),
        })
        .collect::<Result<_, _>>()?;
    Ok((segments, verb))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::descriptors;

    fn routes() -> Routes {
        Routes::from_pool(&descriptors().expect("descriptors")).expect("routes")
    }

    fn found(method: Method, path: &str) -> (String, Vec<(String, String)>) {
        match routes().lookup(&method, path) {
            Lookup::Found(route, bound) => (route.rpc.name().to_owned(), bound),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn pair(field: &str, value: &str) -> (String, String) {
        (field.to_owned(), value.to_owned())
    }

    #[test]
    fn every_rpc_but_consume_has_a_route() {
        let pool = descriptors().expect("descriptors");
        let routes = routes();
        for service in pool.services() {
            if !service.full_name().starts_with("iggy.gateway.v1.") {
                continue;
            }
            for rpc in service.methods() {
                let routed = routes
                    .iter()
                    .any(|route| route.rpc.full_name() == rpc.full_name());
                assert_eq!(routed, rpc.name() != "Consume", "{}", rpc.full_name());
            }
        }
    }

    #[test]
    fn paths_bind_their_variables_decoded() {
        assert_eq!(
            found(Method::POST, "/v1/streams/orders/topics/eu%2Fwest/messages"),
            (
                "Publish".to_owned(),
                vec![pair("stream", "orders"), pair("topic", "eu/west")]
            )
        );
        assert_eq!(
            found(Method::GET, "/v1/streams/7"),
            ("GetStream".to_owned(), vec![pair("stream", "7")])
        );
    }

    #[test]
    fn a_verb_selects_its_own_route() {
        assert_eq!(
            found(Method::POST, "/v1/streams/s/topics/t/messages:batch").0,
            "PublishBatch"
        );
        assert_eq!(found(Method::POST, "/v1/streams/s:purge").0, "PurgeStream");
        assert_eq!(
            found(Method::POST, "/v1/subscriptions/abc:ack"),
            ("Ack".to_owned(), vec![pair("subscription_id", "abc")])
        );
        // Additional bindings are routes too.
        assert_eq!(
            found(Method::POST, "/v1/streams/s/topics/t/consumer-offsets:ack").0,
            "Ack"
        );
    }

    #[test]
    fn a_known_path_with_another_method_is_not_allowed() {
        match routes().lookup(&Method::PATCH, "/v1/streams/s") {
            Lookup::MethodNotAllowed(mut allowed) => {
                allowed.sort_by_key(|method| method.to_string());
                assert_eq!(allowed, [Method::DELETE, Method::GET, Method::PUT]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_paths_and_empty_variables_are_not_found() {
        for path in [
            "/",
            "/v2/streams",
            "/v1/streams//topics",
            "v1/streams",
            "/v1/streams/s/x",
        ] {
            assert!(
                matches!(routes().lookup(&Method::GET, path), Lookup::NotFound),
                "{path}"
            );
        }
    }

    #[test]
    fn unsupported_templates_are_refused() {
        for template in ["/v1/{name=streams/*}", "/v1/**", "v1/x", "/v1/{open"] {
            assert!(parse_template(template).is_err(), "{template}");
        }
        assert_eq!(
            parse_template("/v1/{a}/b:go"),
            Ok((
                vec![
                    Segment::Literal("v1".into()),
                    Segment::Variable("a".into()),
                    Segment::Literal("b".into())
                ],
                Some("go".into())
            ))
        );
    }
}
