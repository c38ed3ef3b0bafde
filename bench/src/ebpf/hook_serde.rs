//! [`Hook`] in the reports' JSON by its name (`"xdp-native"`, ...): `#[serde(with =
//! "hook_serde")]` on a `Hook` field, `#[serde(with = "hook_serde::option")]` on an
//! `Option<Hook>`.

use relay_wire::stamp::Hook;
use serde::{Deserialize, Deserializer, Serializer};

pub fn serialize<S: Serializer>(hook: &Hook, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(hook.name())
}

pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Hook, D::Error> {
    let name = String::deserialize(deserializer)?;
    parse(&name)
}

fn parse<E: serde::de::Error>(name: &str) -> Result<Hook, E> {
    Hook::from_name(name).ok_or_else(|| {
        E::custom(format!(
            "unknown hook {name:?} (xdp-native, xdp-generic, tc-ingress)"
        ))
    })
}

/// The same for an `Option<Hook>` (`null` for none).
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(hook: &Option<Hook>, serializer: S) -> Result<S::Ok, S::Error> {
        match hook {
            Some(hook) => serializer.serialize_some(hook.name()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Hook>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|name| parse(&name))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Both {
        #[serde(with = "super")]
        hook: Hook,
        #[serde(default, with = "super::option")]
        maybe: Option<Hook>,
    }

    #[test]
    fn hooks_are_written_and_read_by_name() {
        for hook in Hook::ALL {
            let both = Both {
                hook,
                maybe: Some(hook),
            };
            let json = serde_json::to_string(&both).unwrap();
            assert_eq!(
                json,
                format!(r#"{{"hook":"{hook}","maybe":"{hook}"}}"#),
                "{json}"
            );
            assert_eq!(serde_json::from_str::<Both>(&json).unwrap(), both);
        }
        let none: Both = serde_json::from_str(r#"{"hook":"tc-ingress","maybe":null}"#).unwrap();
        assert_eq!(none.maybe, None);
        let absent: Both = serde_json::from_str(r#"{"hook":"tc-ingress"}"#).unwrap();
        assert_eq!(absent.maybe, None);
        let err = serde_json::from_str::<Both>(r#"{"hook":"xdp"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown hook \"xdp\""), "{err}");
    }
}
