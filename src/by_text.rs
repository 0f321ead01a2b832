//! Values made from config text once per text: a pattern or template written the same way by
//! ten thousand hooks is checked, parsed or compiled once and held once.

use std::collections::HashMap;

/// What is made from one piece of config text (a `matches` pattern, a template).
pub trait FromText: Clone {
    fn from_text(text: &str) -> Result<Self, String>;
}

/// The values made while one config loads, by the text they were made from. Cloning a value
/// shares what it holds; a text that fails is not kept, so it fails again, with its message.
pub struct ByText<T> {
    made: HashMap<Box<str>, T>,
}

impl<T> Default for ByText<T> {
    fn default() -> ByText<T> {
        ByText {
            made: HashMap::new(),
        }
    }
}

impl<T: FromText> ByText<T> {
    /// The value for `text`, the one already made if the text was seen before.
    pub fn get(&mut self, text: &str) -> Result<T, String> {
        if let Some(made) = self.made.get(text) {
            return Ok(made.clone());
        }
        let made = T::from_text(text)?;
        self.made.insert(text.into(), made.clone());
        Ok(made)
    }
}
