//! What a new login connection does to the user's other connections (`IMCLOUD_IM_DEVICE_POLICY`).

use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevicePolicy {
    /// Every device of the user stays connected.
    #[default]
    Multi,
    /// A new login connection closes the user's older ones on the same platform ("belogin").
    Replace,
}

impl FromStr for DevicePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<DevicePolicy, String> {
        match s {
            "multi" => Ok(DevicePolicy::Multi),
            "replace" => Ok(DevicePolicy::Replace),
            other => Err(format!(
                "IMCLOUD_IM_DEVICE_POLICY must be multi or replace, got {other:?}"
            )),
        }
    }
}

impl DevicePolicy {
    /// Whether a new connection on `platform` closes an existing one whose key names `older_platform`.
    pub fn closes(self, platform: &str, older_platform: &str) -> bool {
        self == DevicePolicy::Replace && platform == older_platform
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_parse_and_decide() {
        assert_eq!("multi".parse(), Ok(DevicePolicy::Multi));
        assert_eq!("replace".parse(), Ok(DevicePolicy::Replace));
        assert!("single".parse::<DevicePolicy>().is_err());
        // (policy, new platform, older platform, closes)
        let table = [
            (DevicePolicy::Multi, "ios", "ios", false),
            (DevicePolicy::Multi, "ios", "web", false),
            (DevicePolicy::Replace, "ios", "ios", true),
            (DevicePolicy::Replace, "ios", "web", false),
        ];
        for (p, new, old, closes) in table {
            assert_eq!(p.closes(new, old), closes, "{p:?} {new} {old}");
        }
    }
}
