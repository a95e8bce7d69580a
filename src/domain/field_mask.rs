//! Update masks (AIP-134): which fields of a resource an update touches.

use crate::error::{Error, Result};

/// Resolves an update mask into fields of type `F`.
///
/// `paths` empty means every field that `is_set` reports as populated. A path
/// naming an output-only field (in `output_only`) is ignored; any other unknown
/// path is INVALID_ARGUMENT on `update_mask`.
pub fn resolve<F: Copy + PartialEq>(
    paths: &[String],
    parse: impl Fn(&str) -> Option<F>,
    output_only: &[&str],
    all: &[F],
    is_set: impl Fn(F) -> bool,
) -> Result<Vec<F>> {
    if paths.is_empty() {
        return Ok(all.iter().copied().filter(|field| is_set(*field)).collect());
    }
    let mut fields = Vec::new();
    for path in paths {
        if path == "*" {
            return Ok(all.to_vec());
        }
        if output_only.contains(&path.as_str()) {
            continue;
        }
        let field = parse(path).ok_or_else(|| {
            Error::invalid(
                "update_mask",
                format!("unknown or immutable field `{path}`"),
            )
        })?;
        if !fields.contains(&field) {
            fields.push(field);
        }
    }
    Ok(fields)
}
