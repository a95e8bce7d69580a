//! Participant categories: who a person is for seat rules and reports (public officers,
//! private-sector staff, TVET trainees, academics, NGO participants...), configurable per
//! deployment. `public` and `private` always exist: they are the two values of the former sector.

use chrono::{DateTime, Utc};

use crate::error::{Error, Reason, Result, Violations};

/// Longest category code.
pub const MAX_CODE_CHARS: usize = 32;
/// Longest display name.
pub const MAX_DISPLAY_NAME_CHARS: usize = 200;
/// Longest description.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;

/// Code of a participant category: 1 to [`MAX_CODE_CHARS`] lowercase letters, digits and `_`,
/// starting with a letter (e.g. `tvet_trainee`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CategoryCode(String);

impl CategoryCode {
    /// Code of the public-sector category (the former `SECTOR_PUBLIC`).
    pub const PUBLIC: &'static str = "public";
    /// Code of the private-sector category (the former `SECTOR_PRIVATE`).
    pub const PRIVATE: &'static str = "private";

    /// Validates a code sent by a client, after trimming surrounding spaces.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let code = text.trim();
        if code.is_empty() {
            return Err("is required".to_owned());
        }
        let well_formed = code.len() <= MAX_CODE_CHARS
            && code.starts_with(|character: char| character.is_ascii_lowercase())
            && code.chars().all(|character| {
                character.is_ascii_lowercase() || character.is_ascii_digit() || character == '_'
            });
        if !well_formed {
            return Err(format!(
                "must be 1 to {MAX_CODE_CHARS} lowercase letters, digits and _, starting with a \
                 letter (e.g. tvet_trainee)"
            ));
        }
        Ok(Self(code.to_owned()))
    }

    /// Returns the code as stored; stored codes were validated when written.
    pub fn from_stored(code: String) -> Self {
        Self(code)
    }

    /// Returns the public-sector category.
    pub fn public() -> Self {
        Self(Self::PUBLIC.to_owned())
    }

    /// Returns the private-sector category.
    pub fn private() -> Self {
        Self(Self::PRIVATE.to_owned())
    }

    /// Returns the code.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Returns true for `public` and `private`, the categories the deprecated sector names.
    pub fn is_sector(&self) -> bool {
        self.0 == Self::PUBLIC || self.0 == Self::PRIVATE
    }
}

impl std::fmt::Display for CategoryCode {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl serde::Serialize for CategoryCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

crate::domain::stored_enum! {
    /// Whether a category may be given to people and seats.
    CategoryState {
        /// In use.
        Active => "ACTIVE",
        /// Kept where it is; refused for new people and seats.
        Archived => "ARCHIVED",
    }
}

/// A participant category as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticipantCategory {
    /// Code; the key.
    pub code: CategoryCode,
    /// Display name.
    pub display_name: String,
    /// Description; empty for none.
    pub description: String,
    /// State.
    pub state: CategoryState,
    /// Incremented on every change; the etag.
    pub revision: i64,
    /// Creation time.
    pub create_time: DateTime<Utc>,
    /// Last change time.
    pub update_time: DateTime<Utc>,
}

/// A field of a category that `UpdateParticipantCategory` may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CategoryField {
    /// `display_name`.
    DisplayName,
    /// `description`.
    Description,
    /// `state`.
    State,
}

impl CategoryField {
    /// Every updatable field.
    pub const ALL: [Self; 3] = [Self::DisplayName, Self::Description, Self::State];
    /// Fields a mask may name but an update ignores.
    pub const OUTPUT_ONLY: [&'static str; 3] = ["etag", "create_time", "update_time"];

    /// Parses a mask path.
    pub fn parse(path: &str) -> Option<Self> {
        match path {
            "display_name" => Some(Self::DisplayName),
            "description" => Some(Self::Description),
            "state" => Some(Self::State),
            _ => None,
        }
    }
}

fn validate_display_name(display_name: &str) -> std::result::Result<String, String> {
    let trimmed = display_name.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err(format!("must be 1 to {MAX_DISPLAY_NAME_CHARS} characters"));
    }
    Ok(trimmed.to_owned())
}

fn validate_description(description: &str) -> std::result::Result<String, String> {
    let trimmed = description.trim();
    if trimmed.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    Ok(trimmed.to_owned())
}

/// A validated new category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCategory {
    /// Code.
    pub code: CategoryCode,
    /// Display name.
    pub display_name: String,
    /// Description.
    pub description: String,
}

impl NewCategory {
    /// Validates a create request's fields (paths under `prefix`).
    pub fn parse(prefix: &str, code: &str, display_name: &str, description: &str) -> Result<Self> {
        match (
            CategoryCode::parse(code),
            validate_display_name(display_name),
            validate_description(description),
        ) {
            (Ok(code), Ok(display_name), Ok(description)) => Ok(Self {
                code,
                display_name,
                description,
            }),
            (code, display_name, description) => {
                let mut violations = Violations::new();
                for (field, result) in [
                    ("code", code.map(|_| ())),
                    ("display_name", display_name.map(|_| ())),
                    ("description", description.map(|_| ())),
                ] {
                    if let Err(why) = result {
                        violations.add(format!("{prefix}.{field}"), why);
                    }
                }
                Err(Error::InvalidArgument(violations))
            }
        }
    }
}

/// Validated new values of an update; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryPatch {
    /// New display name.
    pub display_name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New state.
    pub state: Option<CategoryState>,
}

impl CategoryPatch {
    /// Validates the values of the fields named in `fields` (paths under `prefix`).
    pub fn parse(
        prefix: &str,
        fields: &[CategoryField],
        display_name: &str,
        description: &str,
        state: Option<CategoryState>,
    ) -> Result<Self> {
        let mut violations = Violations::new();
        let mut patch = Self::default();
        for field in fields {
            match field {
                CategoryField::DisplayName => match validate_display_name(display_name) {
                    Ok(value) => patch.display_name = Some(value),
                    Err(why) => violations.add(format!("{prefix}.display_name"), why),
                },
                CategoryField::Description => match validate_description(description) {
                    Ok(value) => patch.description = Some(value),
                    Err(why) => violations.add(format!("{prefix}.description"), why),
                },
                CategoryField::State => match state {
                    Some(value) => patch.state = Some(value),
                    None => violations.add(
                        format!("{prefix}.state"),
                        "is required (ACTIVE or ARCHIVED)",
                    ),
                },
            }
        }
        violations.into_result(patch)
    }

    /// Applies the patch; returns false when nothing changes.
    pub fn apply(&self, category: &mut ParticipantCategory) -> bool {
        let before = category.clone();
        if let Some(display_name) = &self.display_name {
            category.display_name.clone_from(display_name);
        }
        if let Some(description) = &self.description {
            category.description.clone_from(description);
        }
        if let Some(state) = self.state {
            category.state = state;
        }
        *category != before
    }
}

/// Why a category code cannot be given to a person or seats, if it cannot: `found` is the state
/// of the stored category (`None` when there is none), `current` whether the person or cohort
/// already has it (an archived category is kept where it is).
pub fn check_assignable(
    found: Option<CategoryState>,
    current: bool,
) -> std::result::Result<(), (Reason, &'static str)> {
    match found {
        None => Err((
            Reason::CategoryNotFound,
            "is not a participant category of this deployment (see ListParticipantCategories)",
        )),
        Some(CategoryState::Archived) if !current => Err((
            Reason::CategoryArchived,
            "is an archived participant category; it is kept for who has it, not given anew",
        )),
        Some(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_lower_snake_case_and_bounded() {
        assert_eq!(
            CategoryCode::parse(" tvet_trainee ").unwrap().as_str(),
            "tvet_trainee"
        );
        for bad in [
            "",
            "Public",
            "1st",
            "_x",
            "ngo-staff",
            "a b",
            &"x".repeat(33),
        ] {
            assert!(CategoryCode::parse(bad).is_err(), "{bad:?} is refused");
        }
        assert!(CategoryCode::parse(&"x".repeat(32)).is_ok());
        assert!(CategoryCode::public().is_sector());
        assert!(!CategoryCode::parse("ngo").unwrap().is_sector());
    }

    #[test]
    fn a_new_category_names_every_bad_field() {
        let Err(crate::error::Error::InvalidArgument(violations)) =
            NewCategory::parse("category", "NGO", " ", "")
        else {
            panic!("refused");
        };
        let fields: Vec<&str> = violations
            .as_slice()
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["category.code", "category.display_name"]);
    }

    #[test]
    fn archived_categories_stay_where_they_are_but_are_not_given_anew() {
        assert!(check_assignable(Some(CategoryState::Active), false).is_ok());
        assert!(check_assignable(Some(CategoryState::Archived), true).is_ok());
        assert_eq!(
            check_assignable(Some(CategoryState::Archived), false)
                .unwrap_err()
                .0,
            Reason::CategoryArchived
        );
        assert_eq!(
            check_assignable(None, true).unwrap_err().0,
            Reason::CategoryNotFound
        );
    }
}
