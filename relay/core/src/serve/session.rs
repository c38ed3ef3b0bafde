//! One client's connection to the local endpoint: the streams its URL opened, the requests it
//! sends (`SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY` / `GET_PROPERTY`
//! `combined`) and Binance's replies to them, byte for byte in Binance's shape:
//! `{"result":null,"id":1}`, `{"result":["btcusdt@trade"],"id":3}`, and
//! `{"error":{"code":2,"msg":"Invalid request: ..."},"id":1}` for what Binance refuses.

use serde_json::Value;

use crate::binance::stream::is_stream_name;
use crate::binance::{time_unit_of_url, TimeUnit, MAX_STREAMS_PER_CONNECTION};

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Millis => "MILLISECOND",
        TimeUnit::Micros => "MICROSECOND",
    }
}

/// Why a connection's URL was refused (the HTTP answer: 404 for a path that is not an endpoint,
/// 400 for a bad stream list).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("no such endpoint {0:?}: use /ws, /ws/<stream> or /stream?streams=<a>/<b>")]
    NotFound(String),
    #[error("{0:?} is not a stream name (like btcusdt@trade)")]
    BadStream(String),
    #[error("{0} streams: at most {MAX_STREAMS_PER_CONNECTION} per connection")]
    TooMany(usize),
    #[error(
        "timeUnit={asked}: this endpoint serves the exchange's events byte for byte, in {served} \
         (the receiver's exchange URL decides); ask without timeUnit, or give the receiver's URL \
         timeUnit={asked}"
    )]
    TimeUnit {
        asked: &'static str,
        served: &'static str,
    },
}

impl OpenError {
    pub fn http_status(&self) -> u16 {
        match self {
            OpenError::NotFound(_) => 404,
            _ => 400,
        }
    }
}

/// What a subscription request changes, for the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

/// The reply to one request, and what it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub reply: String,
    pub change: Option<Change>,
    /// The reply is an error.
    pub refused: bool,
}

/// One client's streams and form (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    streams: Vec<String>,
    combined: bool,
}

impl Session {
    /// The session a request target opens: `/ws`, `/ws/<a>[/<b>..]` (raw), or `/stream`,
    /// `/stream?streams=<a>/<b>` (combined). Events are served as the exchange sent them, so a
    /// `timeUnit` other than `served` (the unit of the receiver's exchange connection, when it is
    /// known) is refused; other query parameters are ignored.
    pub fn open(target: &str, served: Option<TimeUnit>) -> Result<Session, OpenError> {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let asks_unit = url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "timeUnit");
        if let Some(served) = served.filter(|_| asks_unit) {
            let asked = time_unit_of_url(query);
            if asked != served {
                return Err(OpenError::TimeUnit {
                    asked: unit_name(asked),
                    served: unit_name(served),
                });
            }
        }
        let (combined, listed): (bool, Vec<String>) = match path.trim_end_matches('/') {
            "/ws" => (false, Vec::new()),
            "/stream" => (
                true,
                url::form_urlencoded::parse(query.as_bytes())
                    .filter(|(k, _)| k == "streams")
                    .flat_map(|(_, v)| v.split('/').map(str::to_string).collect::<Vec<_>>())
                    .collect(),
            ),
            other => match other.strip_prefix("/ws/") {
                Some(rest) => (false, rest.split('/').map(str::to_string).collect()),
                None => return Err(OpenError::NotFound(path.to_string())),
            },
        };
        let mut session = Session {
            streams: Vec::new(),
            combined,
        };
        for name in listed.into_iter().filter(|n| !n.is_empty()) {
            if !is_stream_name(&name) {
                return Err(OpenError::BadStream(name));
            }
            if !session.streams.contains(&name) {
                session.streams.push(name);
            }
        }
        if session.streams.len() > MAX_STREAMS_PER_CONNECTION {
            return Err(OpenError::TooMany(session.streams.len()));
        }
        Ok(session)
    }

    /// The streams subscribed, in the order they were.
    pub fn streams(&self) -> &[String] {
        &self.streams
    }

    /// Events go out in the combined-stream wrapper.
    pub fn combined(&self) -> bool {
        self.combined
    }

    /// Answers one text message from the client.
    pub fn handle(&mut self, text: &str) -> Answer {
        let request: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return refuse(3, &format!("Invalid JSON: {e}"), "null"),
        };
        let Some(request) = request.as_object() else {
            return refuse(2, "Invalid request: expected a JSON object", "null");
        };
        let id = match request.get("id") {
            None | Some(Value::Null) => "null".to_string(),
            Some(Value::Number(n)) if n.is_u64() => n.to_string(),
            Some(Value::String(s))
                if s.len() <= 36 && s.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                Value::String(s.clone()).to_string()
            }
            Some(_) => {
                return refuse(
                    2,
                    "Invalid request: request ID must be an unsigned integer",
                    "null",
                )
            }
        };
        let params = request.get("params");
        let method = match request.get("method") {
            Some(Value::String(m)) => m.as_str(),
            Some(_) => return refuse(2, "Invalid request: method must be a string", &id),
            None => return refuse(2, "Invalid request: missing field `method`", &id),
        };
        match method {
            "SUBSCRIBE" | "UNSUBSCRIBE" => {
                let names = match stream_params(params) {
                    Ok(names) => names,
                    Err(why) => return refuse(2, &why, &id),
                };
                let change = if method == "SUBSCRIBE" {
                    let new: Vec<String> = names
                        .into_iter()
                        .filter(|n| !self.streams.contains(n))
                        .fold(Vec::new(), |mut new, n| {
                            if !new.contains(&n) {
                                new.push(n);
                            }
                            new
                        });
                    if self.streams.len() + new.len() > MAX_STREAMS_PER_CONNECTION {
                        return refuse(
                            2,
                            &format!("Invalid request: at most {MAX_STREAMS_PER_CONNECTION} streams per connection"),
                            &id,
                        );
                    }
                    self.streams.extend(new.iter().cloned());
                    Change::Subscribe(new)
                } else {
                    let gone: Vec<String> = names
                        .into_iter()
                        .filter(|n| self.streams.contains(n))
                        .collect();
                    self.streams.retain(|s| !gone.contains(s));
                    Change::Unsubscribe(gone)
                };
                Answer {
                    reply: result("null", &id),
                    change: Some(change),
                    refused: false,
                }
            }
            "LIST_SUBSCRIPTIONS" => {
                let list = Value::from(self.streams.clone()).to_string();
                answer(result(&list, &id))
            }
            "SET_PROPERTY" | "GET_PROPERTY" => {
                let params = params.and_then(Value::as_array);
                let name = params.and_then(|p| p.first());
                match name {
                    Some(Value::String(n)) if n == "combined" => {}
                    Some(Value::String(_)) => return refuse(0, "Unknown property", &id),
                    _ => {
                        return refuse(
                            2,
                            "Invalid request: property name must be a string",
                            &id,
                        )
                    }
                }
                if method == "GET_PROPERTY" {
                    return answer(result(&self.combined.to_string(), &id));
                }
                match params.and_then(|p| p.get(1)) {
                    Some(Value::Bool(on)) => {
                        self.combined = *on;
                        answer(result("null", &id))
                    }
                    _ => refuse(1, "Invalid value type: expected Boolean", &id),
                }
            }
            other => refuse(
                2,
                &format!("Invalid request: unknown variant `{other}`, expected one of `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"),
                &id,
            ),
        }
    }
}

fn stream_params(params: Option<&Value>) -> Result<Vec<String>, String> {
    let Some(list) = params.and_then(Value::as_array) else {
        return Err("Invalid request: params must be an array of stream names".to_string());
    };
    list.iter()
        .map(|v| match v.as_str() {
            Some(name) if is_stream_name(name) => Ok(name.to_string()),
            _ => Err(format!("Invalid request: {v} is not a stream name")),
        })
        .collect()
}

fn result(result: &str, id: &str) -> String {
    format!(r#"{{"result":{result},"id":{id}}}"#)
}

fn answer(reply: String) -> Answer {
    Answer {
        reply,
        change: None,
        refused: false,
    }
}

fn refuse(code: u8, msg: &str, id: &str) -> Answer {
    let msg = Value::String(msg.to_string());
    Answer {
        reply: format!(r#"{{"error":{{"code":{code},"msg":{msg}}},"id":{id}}}"#),
        change: None,
        refused: true,
    }
}

#[cfg(test)]
mod tests;
