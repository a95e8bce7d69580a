//! Printable certificates: one A4 landscape PDF page with the holder, track, issuer, dates and
//! verification code in English and Malay, a QR code to the verification page, and the signed
//! credential attached as `credential.json` (an embedded file associated with the document, as
//! PDF/A-3 does). The font is compiled in (assets/fonts), so the PDF is self-contained. Pure
//! computation, no I/O.

use chrono::{DateTime, Datelike as _, FixedOffset, Timelike as _, Utc};
use krilla::{
    Document,
    color::rgb,
    embed::{AssociationKind, EmbeddedFile, MimeType},
    geom::{PathBuilder, Point, Rect},
    metadata::Metadata,
    num::NormalizedF32,
    page::PageSettings,
    paint::{Fill, FillRule, Stroke},
    surface::Surface,
    text::{Font, TextDirection},
};
use skrifa::{MetadataProvider as _, instance::LocationRef};

use super::{CertificateStatus, TrackLevel};

/// DejaVu Sans, cut down to Latin (assets/fonts/README.md).
static REGULAR_FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans.ttf");
/// DejaVu Sans Bold, cut down the same way.
static BOLD_FONT: &[u8] = include_bytes!("../../../assets/fonts/DejaVuSans-Bold.ttf");

/// A4 landscape, in points.
const PAGE_WIDTH: f32 = 841.89;
const PAGE_HEIGHT: f32 = 595.28;
/// Widest line of centred text.
const TEXT_WIDTH: f32 = 700.0;
/// Media type of the PDF.
pub const PDF_MEDIA_TYPE: &str = "application/pdf";
/// Name of the attached credential.
pub const CREDENTIAL_FILE_NAME: &str = "credential.json";
/// Media type of a verifiable credential secured with an embedded proof (VC Data Model 2.0).
pub const CREDENTIAL_MEDIA_TYPE: &str = "application/vc";

/// Malaysia time (UTC+8, no daylight saving): dates are printed as people there read them.
fn malaysia() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// A language people read certificates and verification pages in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    /// English.
    English,
    /// Bahasa Melayu.
    Malay,
}

impl Language {
    /// Returns the BCP 47 tag (`en`, `ms`).
    pub fn tag(self) -> &'static str {
        match self {
            Self::English => "en",
            Self::Malay => "ms",
        }
    }

    /// Returns the language of a BCP 47 tag or ISO 639 code (`en-GB`, `ms-MY`, `msa`, `may`), if
    /// it is one of ours.
    pub fn from_tag(tag: &str) -> Option<Self> {
        let primary = tag
            .split(['-', '_'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        match primary.as_str() {
            "en" | "eng" => Some(Self::English),
            "ms" | "msa" | "may" | "zsm" => Some(Self::Malay),
            _ => None,
        }
    }
}

const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const MONTHS_MS: [&str; 12] = [
    "Januari",
    "Februari",
    "Mac",
    "April",
    "Mei",
    "Jun",
    "Julai",
    "Ogos",
    "September",
    "Oktober",
    "November",
    "Disember",
];

/// Returns the date of `time` in Malaysia time, as `2 January 2026` (or `2 Januari 2026`).
pub fn format_date(time: DateTime<Utc>, language: Language) -> String {
    let local = time.with_timezone(&malaysia());
    let months = match language {
        Language::English => &MONTHS_EN,
        Language::Malay => &MONTHS_MS,
    };
    format!(
        "{} {} {}",
        local.day(),
        months[local.month0() as usize],
        local.year()
    )
}

/// Returns the date and time of `time` in Malaysia time: `2 January 2026, 14:05 MYT`.
pub fn format_date_time(time: DateTime<Utc>, language: Language) -> String {
    let local = time.with_timezone(&malaysia());
    format!(
        "{}, {:02}:{:02} MYT",
        format_date(time, language),
        local.hour(),
        local.minute()
    )
}

/// Returns how a status reads to a person.
pub fn status_label(status: CertificateStatus, language: Language) -> &'static str {
    match (status, language) {
        (CertificateStatus::Active, Language::English) => "Valid",
        (CertificateStatus::Active, Language::Malay) => "Sah",
        (CertificateStatus::Suspended, Language::English) => "Suspended",
        (CertificateStatus::Suspended, Language::Malay) => "Digantung",
        (CertificateStatus::Revoked, Language::English) => "Revoked",
        (CertificateStatus::Revoked, Language::Malay) => "Dibatalkan",
        (CertificateStatus::Expired, Language::English) => "Expired",
        (CertificateStatus::Expired, Language::Malay) => "Tamat tempoh",
        (CertificateStatus::Superseded, Language::English) => "Superseded",
        (CertificateStatus::Superseded, Language::Malay) => "Digantikan",
    }
}

/// Returns how a track level reads to a person.
pub fn level_label(level: TrackLevel, language: Language) -> &'static str {
    match (level, language) {
        (TrackLevel::MasterTrainer, Language::English) => "Master trainer",
        (TrackLevel::MasterTrainer, Language::Malay) => "Jurulatih induk",
        (TrackLevel::Trainer, Language::English) => "Trainer",
        (TrackLevel::Trainer, Language::Malay) => "Jurulatih",
        (TrackLevel::Ambassador, Language::English) => "Ambassador",
        (TrackLevel::Ambassador, Language::Malay) => "Duta",
    }
}

/// What a printed certificate says.
#[derive(Debug, Clone)]
pub struct DocumentClaims<'a> {
    /// Holder's full name.
    pub holder_name: &'a str,
    /// Track title.
    pub track_title: &'a str,
    /// Track code.
    pub track_code: &'a str,
    /// Track level.
    pub level: TrackLevel,
    /// Issuing organisation's name.
    pub issuer_name: &'a str,
    /// Issued.
    pub issued_time: DateTime<Utc>,
    /// Expires.
    pub expires_time: DateTime<Utc>,
    /// Verification code (`XXXX-XXXX-XXXX`).
    pub verification_code: &'a str,
    /// Status when the document is made; anything but ACTIVE is printed across the page.
    pub status: CertificateStatus,
    /// The verification page the QR code leads to.
    pub verify_url: &'a str,
    /// The signed credential (JSON), attached as `credential.json`.
    pub credential_json: &'a str,
}

/// Why a document could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The verification URL does not fit in a QR code.
    #[error("the verification URL does not fit in a QR code: {0}")]
    QrCode(String),
    /// The PDF writer refused.
    #[error("writing the PDF failed: {0}")]
    Pdf(String),
}

/// A font for krilla with its metrics for measuring.
struct Face {
    font: Font,
    data: &'static [u8],
}

impl Face {
    fn load(data: &'static [u8]) -> Result<Self, DocumentError> {
        let font = Font::new(data.into(), 0)
            .ok_or_else(|| DocumentError::Pdf("the embedded font does not load".to_owned()))?;
        Ok(Self { font, data })
    }

    /// Returns the advance width of `text` at `size` points (without kerning: a little wider
    /// than drawn, which is the safe side for fitting).
    fn width(&self, text: &str, size: f32) -> f32 {
        let Ok(font) = skrifa::FontRef::new(self.data) else {
            return 0.0;
        };
        let charmap = font.charmap();
        let metrics = font.glyph_metrics(skrifa::instance::Size::new(size), LocationRef::default());
        text.chars()
            .map(|character| {
                let glyph = charmap.map(character).unwrap_or_default();
                metrics.advance_width(glyph).unwrap_or(size * 0.6)
            })
            .sum()
    }

    /// Splits `text` into lines no wider than `width` at `size` (a word wider than a line is
    /// cut by characters).
    fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() {
                word.to_owned()
            } else {
                format!("{line} {word}")
            };
            if self.width(&candidate, size) <= width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            for character in word.chars() {
                line.push(character);
                if self.width(&line, size) > width {
                    line.pop();
                    lines.push(std::mem::take(&mut line));
                    line.push(character);
                }
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }

    /// Returns the largest size from `sizes` at which `text` takes at most `max_lines` lines of
    /// `width`, with its lines; the smallest size (and as many lines as it needs) otherwise.
    fn fit(&self, text: &str, sizes: &[f32], width: f32, max_lines: usize) -> (f32, Vec<String>) {
        let mut fitted = (0.0, Vec::new());
        for size in sizes {
            fitted = (*size, self.wrap(text, *size, width));
            if fitted.1.len() <= max_lines {
                break;
            }
        }
        fitted
    }
}

/// Colours of the page.
const INK: (u8, u8, u8) = (0x1a, 0x1a, 0x1a);
const MUTED: (u8, u8, u8) = (0x4a, 0x4a, 0x4a);
const ACCENT: (u8, u8, u8) = (0x0f, 0x4c, 0x5c);
const WARNING: (u8, u8, u8) = (0xa1, 0x12, 0x12);

fn fill(surface: &mut Surface<'_>, (red, green, blue): (u8, u8, u8)) {
    surface.set_fill(Some(Fill {
        paint: rgb::Color::new(red, green, blue).into(),
        opacity: NormalizedF32::ONE,
        rule: FillRule::NonZero,
    }));
}

fn draw(surface: &mut Surface<'_>, face: &Face, size: f32, x: f32, y: f32, text: &str) {
    surface.draw_text(
        Point::from_xy(x, y),
        face.font.clone(),
        size,
        text,
        false,
        TextDirection::Auto,
    );
}

fn draw_centred(surface: &mut Surface<'_>, face: &Face, size: f32, y: f32, text: &str) {
    let x = (PAGE_WIDTH - face.width(text, size)) / 2.0;
    draw(surface, face, size, x.max(24.0), y, text);
}

/// Draws the QR code of `url` with its top-left corner at (`x`, `y`), `side` points wide.
fn draw_qr_code(
    surface: &mut Surface<'_>,
    url: &str,
    x: f32,
    y: f32,
    side: f32,
) -> Result<(), DocumentError> {
    let code = qrcode::QrCode::with_error_correction_level(url.as_bytes(), qrcode::EcLevel::M)
        .map_err(|error| DocumentError::QrCode(error.to_string()))?;
    let modules = code.width();
    // Four modules of quiet zone on every side, as readers expect.
    let module = side / (modules + 8) as f32;
    let mut path = PathBuilder::new();
    for (index, color) in code.to_colors().into_iter().enumerate() {
        if color == qrcode::Color::Dark {
            let (column, row) = ((index % modules) as f32, (index / modules) as f32);
            if let Some(square) = Rect::from_xywh(
                x + (column + 4.0) * module,
                y + (row + 4.0) * module,
                module,
                module,
            ) {
                path.push_rect(square);
            }
        }
    }
    if let Some(path) = path.finish() {
        fill(surface, (0, 0, 0));
        surface.draw_path(&path);
    }
    Ok(())
}

/// Returns the PDF of a certificate.
pub fn certificate_pdf(claims: &DocumentClaims<'_>) -> Result<Vec<u8>, DocumentError> {
    let regular = Face::load(REGULAR_FONT)?;
    let bold = Face::load(BOLD_FONT)?;
    let mut document = Document::new();
    let settings = PageSettings::from_wh(PAGE_WIDTH, PAGE_HEIGHT)
        .ok_or_else(|| DocumentError::Pdf("bad page size".to_owned()))?;
    let mut page = document.start_page_with(settings);
    let mut surface = page.surface();

    // A frame around the page.
    if let Some(frame) = Rect::from_xywh(24.0, 24.0, PAGE_WIDTH - 48.0, PAGE_HEIGHT - 48.0) {
        let mut path = PathBuilder::new();
        path.push_rect(frame);
        if let Some(path) = path.finish() {
            surface.set_fill(None);
            surface.set_stroke(Some(Stroke {
                paint: rgb::Color::new(ACCENT.0, ACCENT.1, ACCENT.2).into(),
                width: 2.5,
                ..Default::default()
            }));
            surface.draw_path(&path);
            surface.set_stroke(None);
        }
    }

    fill(&mut surface, ACCENT);
    let (issuer_size, issuer_lines) =
        bold.fit(claims.issuer_name, &[16.0, 13.0, 11.0], TEXT_WIDTH, 1);
    let mut y = 78.0;
    for line in &issuer_lines {
        draw_centred(&mut surface, &bold, issuer_size, y, line);
        y += issuer_size * 1.25;
    }
    draw_centred(
        &mut surface,
        &regular,
        12.0,
        y + 4.0,
        "SIJIL PENTAULIAHAN  ·  CERTIFICATE OF CERTIFICATION",
    );

    fill(&mut surface, MUTED);
    draw_centred(
        &mut surface,
        &regular,
        11.0,
        150.0,
        "Dengan ini diperakui bahawa  /  This is to certify that",
    );
    fill(&mut surface, INK);
    let (name_size, name_lines) = bold.fit(
        claims.holder_name,
        &[28.0, 24.0, 20.0, 16.0, 13.0],
        TEXT_WIDTH,
        2,
    );
    let mut y = 192.0;
    for line in &name_lines {
        draw_centred(&mut surface, &bold, name_size, y, line);
        y += name_size * 1.2;
    }
    fill(&mut surface, MUTED);
    let level = format!(
        "ditauliahkan sebagai {}  /  is certified as {}",
        level_label(claims.level, Language::Malay).to_lowercase(),
        level_label(claims.level, Language::English).to_lowercase()
    );
    draw_centred(&mut surface, &regular, 11.0, y + 8.0, &level);
    fill(&mut surface, INK);
    let (title_size, title_lines) =
        bold.fit(claims.track_title, &[18.0, 15.0, 12.0, 10.0], TEXT_WIDTH, 2);
    let mut y = y + 40.0;
    for line in &title_lines {
        draw_centred(&mut surface, &bold, title_size, y, line);
        y += title_size * 1.25;
    }
    fill(&mut surface, MUTED);
    draw_centred(
        &mut surface,
        &regular,
        11.0,
        y + 2.0,
        &format!("({})", claims.track_code),
    );
    // A warning, when there is one, goes between the track and the facts.
    let warning_y = (y + 32.0).clamp(350.0, 370.0);

    // The facts, bottom left; the QR code, bottom right.
    let facts = [
        ("Pengeluar / Issuer", claims.issuer_name.to_owned()),
        (
            "Tarikh dikeluarkan / Issued",
            format!(
                "{}  /  {}",
                format_date(claims.issued_time, Language::Malay),
                format_date(claims.issued_time, Language::English)
            ),
        ),
        (
            "Sah sehingga / Valid until",
            format!(
                "{}  /  {}",
                format_date(claims.expires_time, Language::Malay),
                format_date(claims.expires_time, Language::English)
            ),
        ),
        (
            "Kod pengesahan / Verification code",
            claims.verification_code.to_owned(),
        ),
    ];
    let mut y = 384.0;
    for (label, value) in &facts {
        fill(&mut surface, MUTED);
        draw(&mut surface, &regular, 9.0, 64.0, y, label);
        fill(&mut surface, INK);
        let (size, lines) = bold.fit(value, &[11.0, 9.0, 8.0], 480.0, 1);
        draw(
            &mut surface,
            &bold,
            size,
            64.0,
            y + 14.0,
            lines.first().map_or("", String::as_str),
        );
        y += 32.0;
    }
    fill(&mut surface, MUTED);
    let (url_size, url_lines) = regular.fit(claims.verify_url, &[8.0, 7.0, 6.0], 480.0, 1);
    draw(
        &mut surface,
        &regular,
        8.0,
        64.0,
        y + 2.0,
        "Sahkan status semasa di  /  Check the current status at:",
    );
    draw(
        &mut surface,
        &regular,
        url_size,
        64.0,
        y + 13.0,
        url_lines.first().map_or("", String::as_str),
    );

    let qr_side = 150.0;
    let qr_x = PAGE_WIDTH - 64.0 - qr_side;
    let qr_y = 372.0;
    draw_qr_code(&mut surface, claims.verify_url, qr_x, qr_y, qr_side)?;
    fill(&mut surface, MUTED);
    let caption = "Imbas untuk sahkan / Scan to verify";
    let caption_x = qr_x + (qr_side - regular.width(caption, 8.0)) / 2.0;
    draw(
        &mut surface,
        &regular,
        8.0,
        caption_x,
        qr_y + qr_side + 6.0,
        caption,
    );

    if claims.status != CertificateStatus::Active {
        fill(&mut surface, WARNING);
        let banner = format!(
            "TIDAK SAH: {}  /  NOT VALID: {}",
            status_label(claims.status, Language::Malay).to_uppercase(),
            status_label(claims.status, Language::English).to_uppercase()
        );
        let (size, lines) = bold.fit(&banner, &[18.0, 14.0, 11.0], TEXT_WIDTH, 1);
        draw_centred(
            &mut surface,
            &bold,
            size,
            warning_y,
            lines.first().map_or("", String::as_str),
        );
    }

    fill(&mut surface, MUTED);
    draw_centred(
        &mut surface,
        &regular,
        7.0,
        PAGE_HEIGHT - 36.0,
        "The signed Open Badges 3.0 credential is attached to this PDF as credential.json.  /  Kelayakan digital bertandatangan (Open Badges 3.0) dilampirkan sebagai credential.json.",
    );
    surface.finish();
    page.finish();

    document.set_metadata(
        Metadata::new()
            .title(format!(
                "Certificate {} - {}",
                claims.verification_code, claims.holder_name
            ))
            .description(format!(
                "{} certified as {} of {} by {}",
                claims.holder_name,
                level_label(claims.level, Language::English).to_lowercase(),
                claims.track_title,
                claims.issuer_name
            ))
            .language("ms".to_owned())
            .creator("lms".to_owned()),
    );
    document
        .embed_file(EmbeddedFile {
            path: CREDENTIAL_FILE_NAME.to_owned(),
            mime_type: MimeType::new(CREDENTIAL_MEDIA_TYPE),
            description: Some(
                "Open Badges 3.0 verifiable credential of this certificate, with its eddsa-jcs-2022 proof"
                    .to_owned(),
            ),
            association_kind: AssociationKind::Source,
            data: claims.credential_json.as_bytes().to_vec().into(),
            modification_date: None,
            compress: Some(true),
            location: None,
        })
        .ok_or_else(|| DocumentError::Pdf("the credential could not be attached".to_owned()))?;
    document
        .finish()
        .map_err(|error| DocumentError::Pdf(format!("{error:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(status: CertificateStatus) -> DocumentClaims<'static> {
        let issued = DateTime::parse_from_rfc3339("2026-01-01T20:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        DocumentClaims {
            holder_name: "Nur Aisyah binti Abdul Rahman",
            track_title: "Fibre splicing trainer",
            track_code: "FIBRE-TRAINER",
            level: TrackLevel::Trainer,
            issuer_name: "Jabatan Tenaga Manusia",
            issued_time: issued,
            expires_time: issued + chrono::Duration::days(730),
            verification_code: "ABCD-EFGH-JKMN",
            status,
            verify_url: "https://lms.example.gov.my/verify/ABCD-EFGH-JKMN",
            credential_json: "{\"type\":[\"VerifiableCredential\"]}",
        }
    }

    #[test]
    fn a_certificate_is_a_pdf_with_the_credential_attached() {
        let pdf = certificate_pdf(&claims(CertificateStatus::Active)).unwrap();
        assert!(pdf.starts_with(b"%PDF-"));
        let text = String::from_utf8_lossy(&pdf);
        assert!(text.contains("credential.json"), "the attachment is named");
        assert!(text.contains("/EmbeddedFile"), "the credential is embedded");
        assert_eq!(
            pdf,
            certificate_pdf(&claims(CertificateStatus::Active)).unwrap(),
            "the same certificate gives the same bytes"
        );
        assert_ne!(
            pdf,
            certificate_pdf(&claims(CertificateStatus::Revoked)).unwrap(),
            "a revoked certificate says so"
        );
    }

    #[test]
    fn dates_are_printed_in_malaysia_time_in_both_languages() {
        let time = DateTime::parse_from_rfc3339("2026-01-31T17:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(format_date(time, Language::English), "1 February 2026");
        assert_eq!(format_date(time, Language::Malay), "1 Februari 2026");
        assert_eq!(
            format_date_time(time, Language::Malay),
            "1 Februari 2026, 01:00 MYT"
        );
    }

    #[test]
    fn long_text_wraps_within_the_width() {
        let face = Face::load(REGULAR_FONT).unwrap();
        let long = "Pegawai ".repeat(40);
        let (size, lines) = face.fit(&long, &[28.0, 12.0], TEXT_WIDTH, 2);
        assert_eq!(size, 12.0);
        assert!(lines.len() > 2);
        assert!(
            lines
                .iter()
                .all(|line| face.width(line, size) <= TEXT_WIDTH)
        );
        let unbroken = "X".repeat(300);
        assert!(
            face.wrap(&unbroken, 12.0, 100.0)
                .iter()
                .all(|line| face.width(line, 12.0) <= 100.0)
        );
        assert_eq!(Language::from_tag("ms-MY"), Some(Language::Malay));
        assert_eq!(Language::from_tag("en_GB"), Some(Language::English));
        assert_eq!(Language::from_tag("fr"), None);
    }
}
