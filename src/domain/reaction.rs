//! Message reactions: Feishu's emoji types and the stored reaction.

use serde::{Deserialize, Serialize};

use super::ids::{ChatId, MessageId};
use super::message::Sender;
use crate::error::{FeishuError, ReactionErr};

/// Every `emoji_type` Feishu accepts (its "表情文案说明" page), case-sensitive: most are upper
/// case, a later set CamelCase. Anything else is 231001.
pub const EMOJI_TYPES: &[&str] = &[
    "OK", "THUMBSUP", "THANKS", "MUSCLE", "FINGERHEART", "APPLAUSE", "FISTBUMP", "JIAYI", "DONE", "SMILE", "BLUSH",
    "LAUGH", "SMIRK", "LOL", "FACEPALM", "LOVE", "WINK", "PROUD", "WITTY", "SMART", "SCOWL", "THINKING", "SOB", "CRY",
    "ERROR", "NOSEPICK", "HAUGHTY", "SLAP", "SPITBLOOD", "TOASTED", "GLANCE", "DULL", "INNOCENTSMILE", "JOYFUL", "WOW",
    "TRICK", "YEAH", "ENOUGH", "TEARS", "EMBARRASSED", "KISS", "SMOOCH", "DROOL", "OBSESSED", "MONEY", "TEASE",
    "SHOWOFF", "COMFORT", "CLAP", "PRAISE", "STRIVE", "XBLUSH", "SILENT", "WAVE", "WHAT", "FROWN", "SHY", "DIZZY",
    "LOOKDOWN", "CHUCKLE", "WAIL", "CRAZY", "WHIMPER", "HUG", "BLUBBER", "WRONGED", "HUSKY", "SHHH", "SMUG", "ANGRY",
    "HAMMER", "SHOCKED", "TERROR", "PETRIFIED", "SKULL", "SWEAT", "SPEECHLESS", "SLEEP", "DROWSY", "YAWN", "SICK",
    "PUKE", "BETRAYED", "HEADSET", "EatingFood", "MeMeMe", "Sigh", "Typing", "SLIGHT", "TONGUE", "EYESCLOSED",
    "RoarForYou", "CALF", "BEAR", "BULL", "RAINBOWPUKE", "Lemon", "ROSE", "HEART", "PARTY", "LIPS", "BEER", "CAKE",
    "GIFT", "CUCUMBER", "Drumstick", "Pepper", "CANDIEDHAWS", "BubbleTea", "Coffee", "Get", "LGTM", "OnIt",
    "OneSecond", "VRHeadset", "YouAreTheBest", "SALUTE", "SHAKE", "HIGHFIVE", "UPPERLEFT", "ThumbsDown", "Yes", "No",
    "OKR", "CheckMark", "CrossMark", "MinusOne", "Hundred", "AWESOMEN", "Pin", "Alarm", "Loudspeaker", "Trophy",
    "Fire", "BOMB", "Music", "XmasTree", "Snowman", "XmasHat", "FIREWORKS", "2022", "REDPACKET", "FORTUNE", "LUCK",
    "FIRECRACKER", "StickyRiceBalls", "HEARTBROKEN", "POOP", "StatusFlashOfInspiration", "18X", "CLEAVER", "Soccer",
    "Basketball", "GeneralDoNotDisturb", "Status_PrivateMessage", "GeneralInMeetingBusy", "StatusReading",
    "StatusInFlight", "GeneralBusinessTrip", "GeneralWorkFromHome", "StatusEnjoyLife", "GeneralTravellingCar",
    "StatusBus", "GeneralSun", "GeneralMoonRest", "MoonRabbit", "Mooncake", "JubilantRabbit", "TV", "Movie", "Pumpkin",
    "BeamingFace", "Delighted", "ColdSweat", "FullMoonFace", "Partying", "GoGoGo", "ThanksFace", "SaluteFace", "Shrug",
    "ClownFace", "HappyDragon",
];

/// `emoji_type` if Feishu knows it, else 231001.
pub fn emoji_type(raw: Option<&str>) -> Result<&str, FeishuError> {
    match raw {
        Some(e) if EMOJI_TYPES.contains(&e) => Ok(e),
        _ => Err(ReactionErr::InvalidEmoji.err()),
    }
}

/// One reaction: who put which emoji on which message, when. An operator puts a given emoji on
/// a message at most once (a repeat answers the first), so a message holds at most one reaction
/// per (operator, emoji type).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reaction {
    pub reaction_id: String,
    pub message_id: MessageId,
    pub chat_id: ChatId,
    pub emoji_type: String,
    /// A bot (`app`) or a user.
    pub operator: Sender,
    pub created_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_types_are_case_sensitive_and_unique() {
        assert!(emoji_type(Some("SMILE")).is_ok());
        assert!(emoji_type(Some("Typing")).is_ok());
        assert_eq!(emoji_type(Some("smile")).unwrap_err().code, 231001);
        assert_eq!(emoji_type(None).unwrap_err().code, 231001);
        let mut seen = std::collections::HashSet::new();
        assert!(EMOJI_TYPES.iter().all(|e| seen.insert(*e)));
    }
}
