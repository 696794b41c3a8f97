//! Request field paths such as `messages[3].message.id`. A batch checks
//! every entry, so a path costs nothing to build and is spelled out only
//! when an error names it.

use std::fmt;

/// The path of one request field, as a chain of borrowed steps.
#[derive(Debug, Clone, Copy)]
pub struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    step: Step<'a>,
}

#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    /// `.name` (or `name` at the root).
    Field(&'a str),
    /// `[3]`: an entry of a repeated field.
    Index(usize),
    /// `["key"]`: an entry of a map field.
    Key(&'a str),
}

impl<'a> FieldPath<'a> {
    /// A top-level field of the request.
    pub const fn root(name: &'a str) -> Self {
        Self {
            parent: None,
            step: Step::Field(name),
        }
    }

    /// The field `name` of this message.
    pub const fn field(&'a self, name: &'a str) -> FieldPath<'a> {
        self.then(Step::Field(name))
    }

    /// Entry `index` of this repeated field.
    pub const fn index(&'a self, index: usize) -> FieldPath<'a> {
        self.then(Step::Index(index))
    }

    /// Entry `key` of this map field.
    pub const fn key(&'a self, key: &'a str) -> FieldPath<'a> {
        self.then(Step::Key(key))
    }

    const fn then(&'a self, step: Step<'a>) -> FieldPath<'a> {
        FieldPath {
            parent: Some(self),
            step,
        }
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            parent.fmt(f)?;
        }
        match self.step {
            Step::Field(name) if self.parent.is_some() => write!(f, ".{name}"),
            Step::Field(name) => f.write_str(name),
            Step::Index(index) => write!(f, "[{index}]"),
            Step::Key(key) => write!(f, "[{key:?}]"),
        }
    }
}

impl From<&FieldPath<'_>> for String {
    fn from(path: &FieldPath<'_>) -> Self {
        path.to_string()
    }
}

impl From<FieldPath<'_>> for String {
    fn from(path: FieldPath<'_>) -> Self {
        path.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spells_fields_entries_and_map_keys_as_clients_write_them() {
        let messages = FieldPath::root("messages");
        let entry = messages.index(3);
        let message = entry.field("message");
        assert_eq!(message.field("id").to_string(), "messages[3].message.id");
        let headers = message.field("headers");
        assert_eq!(
            headers.key("trace \"id\"").to_string(),
            r#"messages[3].message.headers["trace \"id\""]"#
        );
        assert_eq!(FieldPath::root("event").to_string(), "event");
    }
}
