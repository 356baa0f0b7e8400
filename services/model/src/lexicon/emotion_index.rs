//! Index of each emotion in `empathy_proto::EMOTION_LABELS`, for the word lists and the
//! evidence that refer to emotions by position.

pub const ANGER: usize = 0;
pub const DISGUST: usize = 1;
pub const FEAR: usize = 2;
pub const JOY: usize = 3;
pub const SADNESS: usize = 4;
pub const SURPRISE: usize = 5;
pub const NEUTRAL: usize = 6;
