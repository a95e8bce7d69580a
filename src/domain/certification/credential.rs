//! Verifiable certificates: per-issuer Ed25519 keys derived from a server seed, `did:key` ids,
//! JSON canonicalisation (RFC 8785), `eddsa-jcs-2022` Data Integrity proofs, Open Badges 3.0
//! credentials and W3C Bitstring Status Lists. Pure computation, no I/O.

use std::io::Write as _;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, SecondsFormat, Utc};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// Multicodec prefix of an Ed25519 public key (`ed25519-pub`, 0xed varint).
const ED25519_MULTICODEC: [u8; 2] = [0xed, 0x01];
/// Bitcoin base-58 alphabet (multibase `z`).
const BASE58_ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The server's secret from which every issuer organisation's signing key is derived.
#[derive(Clone)]
pub struct IssuerSeed([u8; 32]);

impl std::fmt::Debug for IssuerSeed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("IssuerSeed(..)")
    }
}

impl IssuerSeed {
    /// Wraps 32 secret bytes.
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Returns the signing key of issuer organisation `organization_id` (the same on every replica
    /// sharing the seed).
    pub fn signing_key(&self, organization_id: &str) -> SigningKey {
        let mut hasher = Sha256::new();
        hasher.update(b"lms issuer key v1\0");
        hasher.update(self.0);
        hasher.update(organization_id.as_bytes());
        let secret: [u8; 32] = hasher.finalize().into();
        SigningKey::from_bytes(&secret)
    }

    /// Returns the public description of issuer `organization_id`'s key.
    pub fn issuer(&self, organization_id: &str) -> Issuer {
        Issuer::from_public_key(
            organization_id,
            &self.signing_key(organization_id).verifying_key(),
        )
    }
}

/// An issuer's public identity: its `did:key` and key encodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Issuing organisation.
    pub organization_id: String,
    /// `did:key:z6Mk...`.
    pub did: String,
    /// `<did>#<multibase key>`.
    pub verification_method: String,
    /// Multibase multikey (`z6Mk...`).
    pub public_key_multibase: String,
    /// The raw key, base64url without padding.
    pub public_key_base64url: String,
}

impl Issuer {
    /// Describes `public_key` as the key of `organization_id`.
    pub fn from_public_key(organization_id: &str, public_key: &VerifyingKey) -> Self {
        let multibase = multikey(public_key);
        let did = format!("did:key:{multibase}");
        Self {
            organization_id: organization_id.to_owned(),
            verification_method: format!("{did}#{multibase}"),
            did,
            public_key_multibase: multibase,
            public_key_base64url: URL_SAFE_NO_PAD.encode(public_key.as_bytes()),
        }
    }
}

/// Returns the multibase (base58btc) multikey of an Ed25519 public key.
pub fn multikey(public_key: &VerifyingKey) -> String {
    let mut bytes = ED25519_MULTICODEC.to_vec();
    bytes.extend_from_slice(public_key.as_bytes());
    format!("z{}", base58_encode(&bytes))
}

/// Returns the public key of a multibase multikey, if it is an Ed25519 one.
pub fn public_key_from_multikey(multibase: &str) -> Option<VerifyingKey> {
    let bytes = base58_decode(multibase.strip_prefix('z')?)?;
    let key = bytes.strip_prefix(&ED25519_MULTICODEC[..])?;
    VerifyingKey::from_bytes(key.try_into().ok()?).ok()
}

/// Encodes `bytes` in base 58 (Bitcoin alphabet).
pub fn base58_encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|byte| **byte == 0).count();
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for byte in &bytes[zeros..] {
        let mut carry = u32::from(*byte);
        for digit in &mut digits {
            carry += u32::from(*digit) << 8;
            *digit = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = String::with_capacity(zeros + digits.len());
    text.extend(std::iter::repeat_n('1', zeros));
    text.extend(
        digits
            .iter()
            .rev()
            .map(|digit| BASE58_ALPHABET[*digit as usize] as char),
    );
    text
}

/// Decodes base 58 (Bitcoin alphabet); `None` on a foreign character.
pub fn base58_decode(text: &str) -> Option<Vec<u8>> {
    let zeros = text.bytes().take_while(|byte| *byte == b'1').count();
    let mut bytes: Vec<u8> = Vec::new();
    for character in text.bytes().skip(zeros) {
        let mut carry = BASE58_ALPHABET
            .iter()
            .position(|candidate| *candidate == character)? as u32;
        for byte in &mut bytes {
            carry += u32::from(*byte) * 58;
            *byte = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut decoded = vec![0u8; zeros];
    decoded.extend(bytes.iter().rev());
    Some(decoded)
}

/// Returns the RFC 8785 (JCS) canonical form of `value`: keys sorted, no whitespace.
///
/// Our documents hold strings, booleans, integers, arrays and objects with ASCII keys, for which
/// sorting keys by bytes equals JCS's UTF-16 order and serde_json's escaping equals JCS's.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(inner) = map.get(key) {
                    write_canonical(inner, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn proof_hash(proof_options: &Value, document: &Value) -> Vec<u8> {
    let mut data = Sha256::digest(canonical_json(proof_options).as_bytes()).to_vec();
    data.extend_from_slice(&Sha256::digest(canonical_json(document).as_bytes()));
    data
}

/// Returns `document` with an `eddsa-jcs-2022` DataIntegrityProof by `key` of `issuer`.
pub fn sign(
    mut document: Value,
    key: &SigningKey,
    issuer: &Issuer,
    created: DateTime<Utc>,
) -> Value {
    let mut proof = json!({
        "type": "DataIntegrityProof",
        "cryptosuite": "eddsa-jcs-2022",
        "created": rfc3339(created),
        "verificationMethod": issuer.verification_method,
        "proofPurpose": "assertionMethod",
    });
    if let (Some(context), Some(options)) = (document.get("@context"), proof.as_object_mut()) {
        options.insert("@context".to_owned(), context.clone());
    }
    let signature = key.sign(&proof_hash(&proof, &document));
    if let Some(options) = proof.as_object_mut() {
        options.insert(
            "proofValue".to_owned(),
            format!("z{}", base58_encode(&signature.to_bytes())).into(),
        );
    }
    if let Some(fields) = document.as_object_mut() {
        fields.insert("proof".to_owned(), proof);
    }
    document
}

/// Returns true when `secured` carries a valid `eddsa-jcs-2022` proof by `public_key`.
pub fn verify(secured: &Value, public_key: &VerifyingKey) -> bool {
    let Some(fields) = secured.as_object() else {
        return false;
    };
    let Some(mut proof) = fields.get("proof").cloned() else {
        return false;
    };
    let mut document = secured.clone();
    if let Some(fields) = document.as_object_mut() {
        fields.remove("proof");
    }
    let Some(proof_value) = proof
        .as_object_mut()
        .and_then(|options| options.remove("proofValue"))
    else {
        return false;
    };
    let Some(signature) = proof_value
        .as_str()
        .and_then(|text| text.strip_prefix('z'))
        .and_then(base58_decode)
        .and_then(|bytes| <[u8; 64]>::try_from(bytes.as_slice()).ok())
        .map(|bytes| Signature::from_bytes(&bytes))
    else {
        return false;
    };
    if proof.get("cryptosuite").and_then(Value::as_str) != Some("eddsa-jcs-2022") {
        return false;
    }
    public_key
        .verify(&proof_hash(&proof, &document), &signature)
        .is_ok()
}

/// Returns an RFC 3339 time in UTC with seconds (`2026-01-02T03:04:05Z`).
pub fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Returns the URL of issuer `organization_id`'s status list for `purpose` under `base_url`.
pub fn status_list_url(base_url: &str, organization_id: &str, purpose: &str) -> String {
    format!(
        "{}/status-lists/{organization_id}/{purpose}",
        base_url.trim_end_matches('/')
    )
}

/// What an Open Badges certificate credential says.
#[derive(Debug, Clone)]
pub struct CertificateClaims<'a> {
    /// Certificate id.
    pub certificate_id: &'a str,
    /// Holder's full name.
    pub holder_name: &'a str,
    /// Track id.
    pub track_id: &'a str,
    /// Track code.
    pub track_code: &'a str,
    /// Track title.
    pub track_title: &'a str,
    /// Track level (stored name).
    pub level: &'a str,
    /// Issuer organisation name.
    pub issuer_name: &'a str,
    /// Where the issuer's profile is served (`<public url>/issuers/<id>`).
    pub issuer_url: &'a str,
    /// Issued.
    pub issued_time: DateTime<Utc>,
    /// Expires.
    pub expires_time: DateTime<Utc>,
    /// Position in the issuer's status lists.
    pub status_list_index: i32,
    /// Public base URL of this service.
    pub base_url: &'a str,
}

/// Returns the unsigned Open Badges 3.0 credential of a certificate.
pub fn certificate_credential(claims: &CertificateClaims<'_>, issuer: &Issuer) -> Value {
    let base = claims.base_url.trim_end_matches('/');
    let entry = |purpose: &str| {
        let list = status_list_url(base, &issuer.organization_id, purpose);
        json!({
            "id": format!("{list}#{}", claims.status_list_index),
            "type": "BitstringStatusListEntry",
            "statusPurpose": purpose,
            "statusListIndex": claims.status_list_index.to_string(),
            "statusListCredential": list,
        })
    };
    json!({
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
        ],
        "id": format!("urn:uuid:{}", claims.certificate_id),
        "type": ["VerifiableCredential", "OpenBadgeCredential"],
        "name": claims.track_title,
        "issuer": {
            "id": issuer.did,
            "type": ["Profile"],
            "name": claims.issuer_name,
            "url": claims.issuer_url,
        },
        "validFrom": rfc3339(claims.issued_time),
        "validUntil": rfc3339(claims.expires_time),
        "credentialSubject": {
            "type": ["AchievementSubject"],
            "name": claims.holder_name,
            "achievement": achievement(base, claims.track_id, claims.track_code, claims.track_title, claims.level),
        },
        "credentialStatus": [entry("revocation"), entry("suspension")],
    })
}

/// Returns the Open Badges 3.0 Achievement of a certification track: the one every credential of
/// the track embeds, and the document served at its `id` (`<base>/tracks/<track id>`), so the
/// link in a credential resolves to the same achievement.
pub fn achievement(base: &str, track_id: &str, code: &str, title: &str, level: &str) -> Value {
    json!({
        "id": format!("{}/tracks/{track_id}", base.trim_end_matches('/')),
        "type": ["Achievement"],
        "achievementType": "License",
        "name": title,
        "description": format!("Certified {} of track {code}", level.to_lowercase().replace('_', " ")),
        "criteria": {"narrative": "Completed the trainer course, supervised co-deliveries and an assessment as the track requires."},
    })
}

/// Returns the served document of a track's [`achievement`]: the achievement with its JSON-LD
/// context.
pub fn achievement_document(
    base: &str,
    track_id: &str,
    code: &str,
    title: &str,
    level: &str,
) -> Value {
    let mut document = achievement(base, track_id, code, title, level);
    if let Value::Object(fields) = &mut document {
        fields.insert(
            "@context".to_owned(),
            json!([
                "https://www.w3.org/ns/credentials/v2",
                "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json"
            ]),
        );
    }
    document
}

/// Returns the Open Badges 3.0 Profile of an issuer served at `url`: its `did:key` id and name,
/// and its public key as a Multikey verification method for assertions, listed the way the
/// issuer's DID document lists it (so the profile also serves as a controller document).
pub fn issuer_profile(issuer: &Issuer, name: &str, url: &str) -> Value {
    json!({
        "@context": [
            "https://www.w3.org/ns/credentials/v2",
            "https://purl.imsglobal.org/spec/ob/v3p0/context-3.0.3.json",
            "https://www.w3.org/ns/did/v1",
            "https://w3id.org/security/multikey/v1"
        ],
        "id": issuer.did,
        "type": ["Profile"],
        "name": name,
        "url": url,
        "verificationMethod": [{
            "id": issuer.verification_method,
            "type": "Multikey",
            "controller": issuer.did,
            "publicKeyMultibase": issuer.public_key_multibase,
        }],
        "assertionMethod": [issuer.verification_method],
    })
}

/// Returns the W3C `encodedList` of a bitstring with `size` bits where the bits at `set` are 1:
/// GZIP-compressed, base64url without padding, multibase prefix `u`. Bit 0 is the most
/// significant bit of the first byte.
pub fn encoded_status_list(size: i32, set: &[i32]) -> String {
    let mut bits = vec![0u8; (size.max(8) as usize).div_ceil(8)];
    for index in set {
        if let Ok(index) = usize::try_from(*index)
            && index / 8 < bits.len()
        {
            bits[index / 8] |= 0x80 >> (index % 8);
        }
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    // Writing to a Vec cannot fail.
    let compressed = encoder
        .write_all(&bits)
        .and_then(|()| encoder.finish())
        .unwrap_or_default();
    format!("u{}", URL_SAFE_NO_PAD.encode(compressed))
}

/// Returns the bit at `index` of an `encodedList`, or `None` when the list cannot be decoded.
pub fn status_bit(encoded_list: &str, index: i32) -> Option<bool> {
    use std::io::Read as _;
    let compressed = URL_SAFE_NO_PAD
        .decode(encoded_list.strip_prefix('u')?)
        .ok()?;
    let mut bits = Vec::new();
    flate2::read::GzDecoder::new(compressed.as_slice())
        .read_to_end(&mut bits)
        .ok()?;
    let index = usize::try_from(index).ok()?;
    Some(bits.get(index / 8)? & (0x80 >> (index % 8)) != 0)
}

/// Returns the unsigned BitstringStatusListCredential of an issuer for `purpose`.
pub fn status_list_credential(
    issuer: &Issuer,
    base_url: &str,
    purpose: &str,
    encoded_list: &str,
    valid_from: DateTime<Utc>,
) -> Value {
    let url = status_list_url(base_url, &issuer.organization_id, purpose);
    json!({
        "@context": ["https://www.w3.org/ns/credentials/v2"],
        "id": url,
        "type": ["VerifiableCredential", "BitstringStatusListCredential"],
        "issuer": issuer.did,
        "validFrom": rfc3339(valid_from),
        "credentialSubject": {
            "id": format!("{url}#list"),
            "type": "BitstringStatusList",
            "statusPurpose": purpose,
            "encodedList": encoded_list,
        },
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn claims(now: DateTime<Utc>) -> CertificateClaims<'static> {
        CertificateClaims {
            certificate_id: "0192d1a4-0000-7000-8000-000000000001",
            holder_name: "Aminah binti Ali",
            track_id: "0192d1a4-0000-7000-8000-000000000002",
            track_code: "TVET-TRAINER",
            track_title: "TVET telecom trainer",
            level: "TRAINER",
            issuer_name: "JTM",
            issuer_url: "https://lms.example.gov.my/issuers/org-1",
            issued_time: now,
            expires_time: now + chrono::Duration::days(365),
            status_list_index: 42,
            base_url: "https://lms.example.gov.my",
        }
    }

    #[test]
    fn a_signed_credential_verifies_and_fails_when_one_byte_changes() {
        let seed = IssuerSeed::new([7; 32]);
        let issuer = seed.issuer("org-1");
        let key = seed.signing_key("org-1");
        let now = crate::domain::now();
        let signed = sign(
            certificate_credential(&claims(now), &issuer),
            &key,
            &issuer,
            now,
        );
        let public = public_key_from_multikey(&issuer.public_key_multibase).unwrap();
        assert!(verify(&signed, &public));
        let text = signed.to_string();
        let tampered_text = text.replacen("Aminah", "Aminax", 1);
        let tampered: Value = serde_json::from_str(&tampered_text).unwrap();
        assert!(!verify(&tampered, &public));
        let other = seed.issuer("org-2");
        let other_key = public_key_from_multikey(&other.public_key_multibase).unwrap();
        assert!(!verify(&signed, &other_key));
    }

    #[test]
    fn issuer_keys_are_did_keys_of_ed25519() {
        let issuer = IssuerSeed::new([1; 32]).issuer("org");
        assert!(issuer.did.starts_with("did:key:z6Mk"), "{}", issuer.did);
        assert!(issuer.verification_method.starts_with(&issuer.did));
    }

    #[test]
    fn canonical_json_sorts_keys_and_drops_whitespace() {
        let value = json!({"b": 1, "a": [true, null, "x\"y"], "c": {"z": 1, "y": 2}});
        assert_eq!(
            canonical_json(&value),
            r#"{"a":[true,null,"x\"y"],"b":1,"c":{"y":2,"z":1}}"#
        );
    }

    #[test]
    fn status_lists_set_exactly_the_listed_bits() {
        let list = encoded_status_list(131_072, &[0, 9, 131_071]);
        for (index, expected) in [
            (0, true),
            (1, false),
            (9, true),
            (10, false),
            (131_071, true),
        ] {
            assert_eq!(status_bit(&list, index), Some(expected), "bit {index}");
        }
        assert_eq!(status_bit(&list, 131_072), None);
    }

    proptest! {
        #[test]
        fn base58_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = base58_encode(&bytes);
            prop_assert_eq!(base58_decode(&text), Some(bytes));
        }
    }
}
