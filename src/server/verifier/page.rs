//! The verification pages, in English and Malay: semantic HTML with a `lang` attribute, one
//! inline style sheet (allowed by its hash in the Content-Security-Policy), no script, no images.
//! Every value is rendered through maud, which escapes it.

use std::sync::LazyLock;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};
use sha2::{Digest as _, Sha256};

use crate::api::certification::PublicCertificate;
use crate::domain::certification::{
    CertificateStatus,
    credential::rfc3339,
    document::{Language, format_date, format_date_time, level_label, status_label},
};

/// The style sheet: system fonts, high contrast (text 16:1, links and statuses above 7:1), one
/// column on narrow screens, a visible focus ring.
const STYLE: &str = "\
:root{color-scheme:light}\
*{box-sizing:border-box}\
body{margin:0;font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',sans-serif;font-size:1.0625rem;line-height:1.5;color:#1a1a1a;background:#f4f6f7}\
header{background:#0f4c5c;color:#fff}\
header nav{max-width:42rem;margin:0 auto;padding:.75rem 1rem;display:flex;flex-wrap:wrap;justify-content:space-between;gap:.5rem 1rem}\
header a{color:#fff}\
header p{margin:0;font-weight:700}\
header ul{list-style:none;margin:0;padding:0;display:flex;gap:1rem}\
main{max-width:42rem;margin:0 auto;padding:1rem}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}\
h2{font-size:1.15rem;margin:1.5rem 0 .5rem}\
.status{border:2px solid;border-radius:.5rem;padding:.75rem 1rem;margin:0 0 1rem}\
.status strong{font-size:1.2rem}\
.valid{background:#e7f5ec;border-color:#0b6b2e;color:#0a4a20}\
.warning{background:#fff4e0;border-color:#8a5300;color:#5a3600}\
.invalid{background:#fdecea;border-color:#a11212;color:#7a0d0d}\
.card{background:#fff;border:1px solid #c9d1d6;border-radius:.5rem;padding:1rem 1.25rem}\
dl{display:grid;grid-template-columns:minmax(9rem,auto) 1fr;gap:.35rem 1rem;margin:0}\
dt{font-weight:700;color:#333}\
dd{margin:0;overflow-wrap:anywhere}\
@media (max-width:32rem){dl{grid-template-columns:1fr}dd{margin-bottom:.5rem}}\
a{color:#0b4f8a}\
a:focus,button:focus,input:focus{outline:3px solid #c25e00;outline-offset:2px}\
code{font-size:1.05em;letter-spacing:.04em;overflow-wrap:anywhere}\
label{display:block;font-weight:700;margin-bottom:.25rem}\
input{font:inherit;padding:.5rem;border:2px solid #4a4a4a;border-radius:.25rem;width:100%;max-width:20rem}\
button{font:inherit;margin-top:.75rem;padding:.5rem 1.25rem;border:0;border-radius:.25rem;background:#0f4c5c;color:#fff}\
footer{max-width:42rem;margin:0 auto;padding:0 1rem 2rem;color:#404040;font-size:.95rem}";

/// `Content-Security-Policy` of every page: nothing but the style sheet above.
pub fn content_security_policy() -> String {
    static POLICY: LazyLock<String> = LazyLock::new(|| {
        let hash = STANDARD.encode(Sha256::digest(STYLE.as_bytes()));
        format!(
            "default-src 'none'; style-src 'sha256-{hash}'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        )
    });
    POLICY.clone()
}

/// Where a certificate's page links to.
#[derive(Debug, Clone)]
pub struct Links {
    /// The page (a path under the public URL's path).
    pub page: String,
    /// The page's absolute URL (what the QR code holds).
    pub absolute: String,
    /// The printable PDF.
    pub pdf: String,
    /// The page in English.
    pub english: String,
    /// The page in Malay.
    pub malay: String,
    /// The issuer's profile (absolute).
    pub issuer_profile: String,
    /// The status lists the credential names (absolute).
    pub status_lists: Vec<String>,
}

/// The words of the pages in one language.
struct Words {
    service: &'static str,
    language_menu: &'static str,
    heading: &'static str,
    holder: &'static str,
    certified_as: &'static str,
    issuer: &'static str,
    issued: &'static str,
    valid_until: &'static str,
    code: &'static str,
    status: &'static str,
    pdf: &'static str,
    for_software: &'static str,
    software_text: &'static str,
    profile: &'static str,
    status_lists: &'static str,
    checked: &'static str,
    can_change: &'static str,
    not_found: &'static str,
    not_found_text: &'static str,
    you_typed: &'static str,
    form_heading: &'static str,
    form_button: &'static str,
    too_many: &'static str,
    too_many_text: &'static str,
    unavailable: &'static str,
    unavailable_text: &'static str,
}

const ENGLISH: Words = Words {
    service: "Certificate verification",
    language_menu: "Language",
    heading: "Certificate verification",
    holder: "Holder",
    certified_as: "Certified as",
    issuer: "Issuer",
    issued: "Issued",
    valid_until: "Valid until",
    code: "Verification code",
    status: "Status",
    pdf: "Download the printable certificate (PDF)",
    for_software: "For verification software",
    software_text: "This page answers in JSON when asked with the header Accept: application/json; the answer carries the signed Open Badges 3.0 credential (eddsa-jcs-2022). Its status lists and its issuer's key are public:",
    profile: "Issuer profile and public key",
    status_lists: "Status list",
    checked: "Checked",
    can_change: "A certificate's status can change: this page shows it as it is when the page is opened.",
    not_found: "No certificate has this code",
    not_found_text: "Check the code printed on the certificate: twelve letters and digits, such as ABCD-EFGH-JKMN.",
    you_typed: "You asked for",
    form_heading: "Check a certificate",
    form_button: "Check",
    too_many: "Too many requests",
    too_many_text: "Too many pages were asked for from your address. Please wait a moment and try again.",
    unavailable: "The service is busy or unavailable",
    unavailable_text: "Please try again in a moment.",
};

const MALAY: Words = Words {
    service: "Pengesahan sijil",
    language_menu: "Bahasa",
    heading: "Pengesahan sijil",
    holder: "Pemegang",
    certified_as: "Ditauliahkan sebagai",
    issuer: "Pengeluar",
    issued: "Tarikh dikeluarkan",
    valid_until: "Sah sehingga",
    code: "Kod pengesahan",
    status: "Status",
    pdf: "Muat turun sijil untuk dicetak (PDF)",
    for_software: "Untuk perisian pengesahan",
    software_text: "Halaman ini menjawab dalam JSON apabila diminta dengan pengepala Accept: application/json; jawapannya membawa kelayakan Open Badges 3.0 yang ditandatangani (eddsa-jcs-2022). Senarai status dan kunci pengeluarnya terbuka kepada umum:",
    profile: "Profil dan kunci awam pengeluar",
    status_lists: "Senarai status",
    checked: "Disemak",
    can_change: "Status sijil boleh berubah: halaman ini menunjukkannya seperti pada saat halaman dibuka.",
    not_found: "Tiada sijil dengan kod ini",
    not_found_text: "Semak kod yang tercetak pada sijil: dua belas huruf dan digit, seperti ABCD-EFGH-JKMN.",
    you_typed: "Anda meminta",
    form_heading: "Semak sijil",
    form_button: "Semak",
    too_many: "Terlalu banyak permintaan",
    too_many_text: "Terlalu banyak halaman diminta dari alamat anda. Sila tunggu sebentar dan cuba lagi.",
    unavailable: "Perkhidmatan sibuk atau tidak tersedia",
    unavailable_text: "Sila cuba lagi sebentar lagi.",
};

fn words(language: Language) -> &'static Words {
    match language {
        Language::English => &ENGLISH,
        Language::Malay => &MALAY,
    }
}

/// What a status means, in a sentence.
fn status_sentence(status: CertificateStatus, language: Language) -> &'static str {
    match (status, language) {
        (CertificateStatus::Active, Language::English) => {
            "This certificate is active and has not expired."
        }
        (CertificateStatus::Active, Language::Malay) => "Sijil ini aktif dan belum tamat tempoh.",
        (CertificateStatus::Suspended, Language::English) => {
            "The issuer has suspended this certificate: it is not valid unless it is reinstated."
        }
        (CertificateStatus::Suspended, Language::Malay) => {
            "Pengeluar telah menggantung sijil ini: ia tidak sah melainkan dipulihkan semula."
        }
        (CertificateStatus::Revoked, Language::English) => {
            "The issuer has revoked this certificate: it is no longer valid."
        }
        (CertificateStatus::Revoked, Language::Malay) => {
            "Pengeluar telah membatalkan sijil ini: ia tidak lagi sah."
        }
        (CertificateStatus::Expired, Language::English) => {
            "This certificate's period of validity has ended."
        }
        (CertificateStatus::Expired, Language::Malay) => "Tempoh sah sijil ini telah tamat.",
        (CertificateStatus::Superseded, Language::English) => {
            "This certificate was renewed: a newer certificate with another code replaces it, and this one is no longer valid."
        }
        (CertificateStatus::Superseded, Language::Malay) => {
            "Sijil ini telah diperbaharui: sijil baharu dengan kod lain menggantikannya, dan sijil ini tidak lagi sah."
        }
    }
}

fn status_class(status: CertificateStatus) -> &'static str {
    match status {
        CertificateStatus::Active => "status valid",
        CertificateStatus::Suspended => "status warning",
        CertificateStatus::Revoked | CertificateStatus::Expired | CertificateStatus::Superseded => {
            "status invalid"
        }
    }
}

/// The frame of every page: head, header with the language switch, main, footer.
fn layout(
    language: Language,
    title: &str,
    switch: (&str, &str),
    main: Markup,
    footer: Option<Markup>,
) -> String {
    let words = words(language);
    let (english, malay) = switch;
    html! {
        (DOCTYPE)
        html lang=(language.tag()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex, nofollow";
                title { (title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    nav aria-label=(words.language_menu) {
                        p { (words.service) }
                        ul {
                            li {
                                a href=(english) lang="en" hreflang="en"
                                    aria-current=[(language == Language::English).then_some("page")] { "English" }
                            }
                            li {
                                a href=(malay) lang="ms" hreflang="ms"
                                    aria-current=[(language == Language::Malay).then_some("page")] { "Bahasa Melayu" }
                            }
                        }
                    }
                }
                main { (main) }
                @if let Some(footer) = footer {
                    footer { (footer) }
                }
            }
        }
    }
    .into_string()
}

/// The page of a certificate.
pub fn certificate_page(public: &PublicCertificate, links: &Links, language: Language) -> String {
    let words = words(language);
    let verification = &public.verification;
    let certificate = &verification.certificate;
    let status = verification.status;
    let title = format!(
        "{} – {} – {}",
        status_label(status, language),
        verification.holder_name,
        words.heading
    );
    let main = html! {
        h1 { (words.heading) }
        div class=(status_class(status)) role="status" {
            p {
                strong { (words.status) ": " (status_label(status, language)) }
                br;
                (status_sentence(status, language))
            }
        }
        div class="card" {
            dl {
                dt { (words.holder) }
                dd { (verification.holder_name) }
                dt { (words.certified_as) }
                dd {
                    (level_label(verification.track.level, language)) ": "
                    (verification.track.title) " (" (verification.track.code) ")"
                }
                dt { (words.issuer) }
                dd { (verification.issuer_name) }
                dt { (words.issued) }
                dd { time datetime=(rfc3339(certificate.issued_time)) { (format_date(certificate.issued_time, language)) } }
                dt { (words.valid_until) }
                dd { time datetime=(rfc3339(certificate.expires_time)) { (format_date_time(certificate.expires_time, language)) } }
                dt { (words.code) }
                dd { code { (certificate.verification_code) } }
            }
        }
        p { a href=(links.pdf) type="application/pdf" { (words.pdf) } }
        h2 { (words.for_software) }
        p { (words.software_text) }
        ul {
            li { a href=(links.issuer_profile) { (words.profile) } }
            @for list in &links.status_lists {
                li { a href=(list) { (words.status_lists) ": " (list.rsplit('/').next().unwrap_or_default()) } }
            }
        }
    };
    let footer = html! {
        p {
            (words.checked) " "
            time datetime=(rfc3339(public.checked_time)) { (format_date_time(public.checked_time, language)) }
            ". " (words.can_change)
        }
    };
    layout(
        language,
        &title,
        (&links.english, &links.malay),
        main,
        Some(footer),
    )
}

fn code_form(language: Language, base_path: &str) -> Markup {
    let words = words(language);
    html! {
        form action=(format!("{base_path}/verify")) method="get" {
            input type="hidden" name="lang" value=(language.tag());
            label for="code" { (words.code) }
            input id="code" name="code" type="text" autocomplete="off" autocapitalize="characters"
                spellcheck="false" placeholder="ABCD-EFGH-JKMN" maxlength="40" required;
            br;
            button type="submit" { (words.form_button) }
        }
    }
}

/// The form to type a code.
pub fn landing_page(language: Language, base_path: &str) -> String {
    let words = words(language);
    let main = html! {
        h1 { (words.form_heading) }
        (code_form(language, base_path))
    };
    let english = format!("{base_path}/verify?lang=en");
    let malay = format!("{base_path}/verify?lang=ms");
    layout(language, words.form_heading, (&english, &malay), main, None)
}

/// The answer to a code nothing has; `typed` (already shortened) is shown back, escaped.
pub fn not_found_page(language: Language, typed: Option<&str>, base_path: &str) -> String {
    let words = words(language);
    let main = html! {
        h1 { (words.not_found) }
        div class="status invalid" role="status" { p { (words.not_found_text) } }
        @if let Some(typed) = typed {
            p { (words.you_typed) ": " code { (typed) } }
        }
        h2 { (words.form_heading) }
        (code_form(language, base_path))
    };
    let english = format!("{base_path}/verify?lang=en");
    let malay = format!("{base_path}/verify?lang=ms");
    layout(language, words.not_found, (&english, &malay), main, None)
}

/// The answer when the request is refused for load (429, 503) or fails (500).
pub fn refusal_page(status: StatusCode, language: Language, base_path: &str) -> String {
    let words = words(language);
    let (heading, text) = if status == StatusCode::TOO_MANY_REQUESTS {
        (words.too_many, words.too_many_text)
    } else {
        (words.unavailable, words.unavailable_text)
    };
    let main = html! {
        h1 { (heading) }
        p { (text) }
    };
    let english = format!("{base_path}/verify?lang=en");
    let malay = format!("{base_path}/verify?lang=ms");
    layout(language, heading, (&english, &malay), main, None)
}
