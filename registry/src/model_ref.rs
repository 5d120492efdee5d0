//! `NAME`, `NAME:VERSION` and `NAME@ALIAS`: how users name a registered model.

use std::fmt;
use std::str::FromStr;

use crate::versions::{check_name, LATEST};
use crate::RegistryError;

/// A reference to one registered version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// `NAME:VERSION`.
    Version(String, u32),
    /// `NAME@ALIAS`; a bare `NAME` means `NAME@latest`.
    Alias(String, String),
}

impl ModelRef {
    /// The model name.
    pub fn name(&self) -> &str {
        match self {
            ModelRef::Version(n, _) | ModelRef::Alias(n, _) => n,
        }
    }
}

impl FromStr for ModelRef {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let r = if let Some((name, alias)) = s.split_once('@') {
            check_name("alias", alias)?;
            ModelRef::Alias(name.to_string(), alias.to_string())
        } else if let Some((name, version)) = s.split_once(':') {
            let v: u32 = version.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                RegistryError::Invalid(format!(
                    "{s:?}: the version after ':' must be a number from 1"
                ))
            })?;
            ModelRef::Version(name.to_string(), v)
        } else {
            ModelRef::Alias(s.to_string(), LATEST.to_string())
        };
        check_name("model name", r.name())?;
        Ok(r)
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Version(n, v) => write!(f, "{n}:{v}"),
            ModelRef::Alias(n, a) => write!(f, "{n}@{a}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!("m".parse::<ModelRef>().unwrap(), ModelRef::Alias("m".into(), "latest".into()));
        assert_eq!("m:3".parse::<ModelRef>().unwrap(), ModelRef::Version("m".into(), 3));
        assert_eq!(
            "m@production".parse::<ModelRef>().unwrap(),
            ModelRef::Alias("m".into(), "production".into())
        );
        assert!("m:x".parse::<ModelRef>().is_err());
        assert!("m:0".parse::<ModelRef>().is_err());
        assert!("@prod".parse::<ModelRef>().is_err());
        assert!("a b".parse::<ModelRef>().is_err());
    }
}
