//! The key, auth and format vectors of the reference digest (§1.3.5, §2.6), reproduced exactly.

use zos_grid::auth::{self, HeaderError, RequestBinding};
use zos_grid::encoding::{b64_decode, b64_encode};
use zos_grid::keys::{self, DEV_PHRASE, KeyPair, Scheme, VerifyError};
use zos_grid::models::{Interface, Node, NodeInfo, NodeRegistration, ZosVersion};

const ED_PUB: &str = "345071da55e5dccefaaa440339415ef9f2663338a38f7da0df21be5ab4e055ef";
const ED_PUB_B64: &str = "NFBx2lXl3M76qkQDOUFe+fJmMzijj32g3yG+WrTgVe8=";
const SR_PUB: &str = "46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a";
const SR_PUB_B64: &str = "Ruvd74zZuxZ9wwh41xE7fhaObwZGvv/XfWnTm612tHo=";

#[test]
fn entropy_and_mini_secret_of_the_dev_phrase() {
    assert_eq!(
        hex::encode(&*keys::mnemonic_entropy(DEV_PHRASE).unwrap()),
        "1a486a5fbe53639984cb64b070755f7b"
    );
    assert_eq!(
        hex::encode(*keys::mini_secret_from_phrase(DEV_PHRASE, "").unwrap()),
        "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e"
    );
}

#[test]
fn public_keys_of_the_dev_phrase() {
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    assert_eq!(hex::encode(ed.public_key()), ED_PUB);
    assert_eq!(ed.public_key_base64(), ED_PUB_B64);
    let sr = KeyPair::from_uri(DEV_PHRASE, Scheme::Sr25519).unwrap();
    assert_eq!(hex::encode(sr.public_key()), SR_PUB);
    assert_eq!(sr.public_key_base64(), SR_PUB_B64);
    // the hex seed form (how the node passes its seed) gives the same ed25519 key
    let seed = "fac7959dbfe72f052e5a0c3c8d6530f202b02fd8f9f5ca3580ec8deb7797479e";
    assert_eq!(
        hex::encode(
            KeyPair::from_uri(seed, Scheme::Ed25519)
                .unwrap()
                .public_key()
        ),
        ED_PUB
    );
    assert_eq!(
        hex::encode(
            KeyPair::from_uri(&format!("0x{seed}"), Scheme::Ed25519)
                .unwrap()
                .public_key()
        ),
        ED_PUB
    );
    let raw: [u8; 32] = hex::decode(seed).unwrap().try_into().unwrap();
    assert_eq!(
        hex::encode(KeyPair::ed25519_from_seed(&raw).public_key()),
        ED_PUB
    );
}

#[test]
fn well_known_alice_keys_from_hard_derivation() {
    // `subkey inspect //Alice` (dev phrase): published well-known values.
    let ed = KeyPair::from_uri("//Alice", Scheme::Ed25519).unwrap();
    assert_eq!(
        hex::encode(ed.public_key()),
        "88dc3417d5058ec4b4503e0c12ea1a0a89be200fe98922423d4334014fa6b0ee"
    );
    let sr = KeyPair::from_uri(&format!("{DEV_PHRASE}//Alice"), Scheme::Sr25519).unwrap();
    assert_eq!(
        hex::encode(sr.public_key()),
        "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    );
}

#[test]
fn bad_phrases_and_uris_are_named() {
    let e = KeyPair::from_uri(
        "bottom drive obey lake curtain smoke basket hold race lonely fit fit",
        Scheme::Ed25519,
    )
    .unwrap_err();
    assert!(e.to_string().contains("invalid mnemonic"), "{e}");
    let e = KeyPair::from_uri(&format!("{DEV_PHRASE}/soft"), Scheme::Ed25519).unwrap_err();
    assert!(e.to_string().contains("soft derivation"), "{e}");
    // the phrase never appears in an error
    let e = KeyPair::from_uri(&format!("{DEV_PHRASE}///"), Scheme::Ed25519).map(|_| ());
    assert!(e.is_ok(), "an empty password is allowed");
    let e = KeyPair::from_uri(&format!("{DEV_PHRASE}//a//"), Scheme::Ed25519).unwrap_err();
    assert!(
        e.to_string().contains("empty derivation junction") && !e.to_string().contains("bottom"),
        "{e}"
    );
    let e = KeyPair::ed25519_from_hex_seed("abcd").unwrap_err();
    assert!(e.to_string().contains("64 hex digits"), "{e}");
    // a password changes the key
    let with_pw = KeyPair::from_uri(&format!("{DEV_PHRASE}///secret"), Scheme::Ed25519).unwrap();
    assert_ne!(hex::encode(with_pw.public_key()), ED_PUB);
}

#[test]
fn account_creation_signature_vector() {
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    let msg = auth::account_message(1_700_000_000, &ed.public_key_base64());
    assert_eq!(
        msg,
        "1700000000:NFBx2lXl3M76qkQDOUFe+fJmMzijj32g3yG+WrTgVe8="
    );
    let sig = ed.sign(msg.as_bytes());
    assert_eq!(
        b64_encode(&sig),
        "SZVJE+v8SLWCuBhDRJnYN5hOkuvkzzYDNv0Q6c55cKG6A0mULUQKeamic6VJfBaRacS+tT7SCrx+q+q2Y2WtBQ=="
    );
    assert_eq!(
        keys::verify_any(&ed.public_key(), msg.as_bytes(), &sig),
        Ok(Scheme::Ed25519)
    );
}

#[test]
fn x_auth_ed25519_vector_builds_and_parses() {
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    let challenge = auth::v1_challenge(1_700_000_000, 1);
    assert_eq!(challenge, "1700000000:1");
    let header = auth::header_value(&challenge, &ed.sign(challenge.as_bytes()));
    let expected = "MTcwMDAwMDAwMDox:UxYW2XJN+aKDHKOX/FeFoAqmgGkGXVFB7RzU0qGXaj4qolofhYpaCdTJdHizFZ3dKyKWQvWkRmIf+315XHHrDg==";
    assert_eq!(header, expected);
    let p = auth::parse_header(expected).unwrap();
    assert_eq!(
        (p.timestamp, p.twin_id, p.binding.as_ref()),
        (1_700_000_000, 1, None)
    );
    assert_eq!(p.challenge, b"1700000000:1");
    assert_eq!(
        keys::verify_any(&ed.public_key(), &p.challenge, &p.signature),
        Ok(Scheme::Ed25519)
    );
}

#[test]
fn x_auth_sr25519_vector_verifies() {
    let header = "MTcwMDAwMDAwMDox:co25M81whNcLb0D+sqjbJjxph1x+cFstgVPnT4d8fzjG498+3k5/6MWKvOjKKNg3xUFBtKQi62rVQYJ+p/VIgw==";
    let p = auth::parse_header(header).unwrap();
    let pk = b64_decode(SR_PUB_B64).unwrap();
    assert_eq!(
        keys::verify_any(&pk, &p.challenge, &p.signature),
        Ok(Scheme::Sr25519)
    );
    // the same signature over another challenge, or under the ed25519 key, does not verify
    assert_eq!(
        keys::verify_any(&pk, b"1700000000:2", &p.signature),
        Err(VerifyError::Mismatch)
    );
    let ed_pk = b64_decode(ED_PUB_B64).unwrap();
    assert_eq!(
        keys::verify_any(&ed_pk, &p.challenge, &p.signature),
        Err(VerifyError::Mismatch)
    );
    // our own sr25519 signatures verify too (they are randomized, so only verification is comparable)
    let sr = KeyPair::from_uri(DEV_PHRASE, Scheme::Sr25519).unwrap();
    let (a, b) = (sr.sign(b"1700000000:1"), sr.sign(b"1700000000:1"));
    assert_ne!(a, b);
    assert_eq!(
        keys::verify_any(&sr.public_key(), b"1700000000:1", &a),
        Ok(Scheme::Sr25519)
    );
}

#[test]
fn verify_rejects_wrong_lengths_and_tampering() {
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    let sig = ed.sign(b"m");
    assert_eq!(
        keys::verify_any(&ed.public_key()[..31], b"m", &sig),
        Err(VerifyError::PublicKeyLength(31))
    );
    assert_eq!(
        keys::verify_any(&ed.public_key(), b"m", &sig[..63]),
        Err(VerifyError::SignatureLength(63))
    );
    let mut bad = sig;
    bad[0] ^= 1;
    assert_eq!(
        keys::verify_any(&ed.public_key(), b"m", &bad),
        Err(VerifyError::Mismatch)
    );
}

#[test]
fn header_parse_errors_follow_the_reference_messages() {
    let cases = [
        ("", HeaderError::Format),
        ("abc", HeaderError::Format),
        ("a:b:c", HeaderError::Format),
        ("!!!:AAAA", HeaderError::ChallengeEncoding),
        (
            &*format!("{}:AAAA", b64_encode(b"1700000000")),
            HeaderError::ChallengeFormat,
        ),
        (
            &*format!("{}:AAAA", b64_encode(b"1:2:3")),
            HeaderError::ChallengeFormat,
        ),
        (
            &*format!("{}:AAAA", b64_encode(b"soon:1")),
            HeaderError::Timestamp,
        ),
        (
            &*format!("{}:AAAA", b64_encode(b"1700000000:-1")),
            HeaderError::TwinId,
        ),
        (
            &*format!("{}:@@", b64_encode(b"1700000000:1")),
            HeaderError::SignatureEncoding,
        ),
        (
            &*format!("{}:AAAA", b64_encode(b"v2:1:1:n:GET:00:/x")),
            HeaderError::V2Field("body hash"),
        ),
        (
            &*format!("{}:AAAA", b64_encode(b"v2:1:1:n o:GET:00:/x")),
            HeaderError::V2Field("nonce"),
        ),
    ];
    for (header, want) in cases {
        assert_eq!(
            auth::parse_header(header).unwrap_err(),
            want,
            "header {header:?}"
        );
    }
}

#[test]
fn v2_challenge_round_trips_with_colons_in_the_path() {
    let b = RequestBinding::new("patch", "/nodes/1?x=a:b", b"{}");
    let text = auth::v2_challenge(1_700_000_000, 9, &b);
    assert!(text.starts_with("v2:1700000000:9:"));
    let p = auth::parse_header(&auth::header_value(&text, &[0u8; 64])).unwrap();
    assert_eq!(
        p.binding.unwrap(),
        RequestBinding {
            method: "PATCH".into(),
            ..b
        }
    );
    assert_ne!(
        RequestBinding::new("GET", "/", b"").nonce,
        RequestBinding::new("GET", "/", b"").nonce
    );
}

#[test]
fn zos_version_vectors() {
    let v = ZosVersion {
        version: "v4.0.5".into(),
        safe_to_upgrade: true,
    };
    assert_eq!(
        v.encode(),
        "eyJ2ZXJzaW9uIjoidjQuMC41Iiwic2FmZV90b191cGdyYWRlIjp0cnVlfQ=="
    );
    assert_eq!(
        ZosVersion::decode("eyJ2ZXJzaW9uIjoidjQuMC41Iiwic2FmZV90b191cGdyYWRlIjp0cnVlfQ==").unwrap(),
        v
    );
    let legacy =
        ZosVersion::decode("eyd2ZXJzaW9uJzondjQuMC41Jywnc2FmZV90b191cGdyYWRlJzpmYWxzZX0=").unwrap();
    assert_eq!(
        legacy,
        ZosVersion {
            version: "v4.0.5".into(),
            safe_to_upgrade: false
        }
    );
    assert!(
        ZosVersion::decode("not base64!")
            .unwrap_err()
            .to_string()
            .contains("base64")
    );
    assert!(
        ZosVersion::decode(&b64_encode(b"{\"version\":\"v1\"}")).is_err(),
        "safe_to_upgrade is required"
    );
    assert!(
        ZosVersion::decode(&b64_encode(b"{\"version\":\"\",\"safe_to_upgrade\":true}")).is_err()
    );
}

#[test]
fn stellar_address_of_the_dev_key() {
    let ed = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    let addr = keys::stellar_address(&ed.public_key());
    assert_eq!(addr.len(), 56);
    assert!(
        addr.starts_with('G')
            && addr
                .bytes()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()),
        "{addr}"
    );
    // decode the strkey again: version byte 6<<3, the key, CRC16-XModem little endian
    let mut bits = 0u64;
    let mut n = 0;
    let mut raw = Vec::new();
    for c in addr.bytes() {
        let v = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
            .iter()
            .position(|x| *x == c)
            .unwrap() as u64;
        bits = (bits << 5) | v;
        n += 5;
        if n >= 8 {
            n -= 8;
            raw.push((bits >> n) as u8);
        }
    }
    assert_eq!(raw.len(), 35);
    assert_eq!(raw[0], 48);
    assert_eq!(&raw[1..33], &ed.public_key());
    let mut crc: u16 = 0;
    for &b in &raw[..33] {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    assert_eq!(crc.to_le_bytes(), [raw[33], raw[34]]);
}

#[test]
fn node_json_matches_the_real_server() {
    let body = r#"{"node_id":12,"farm_id":3,"twin_id":9,
      "location":{"country":"Belgium","city":"Ghent","longitude":"3.7","latitude":"51.05"},
      "resources":{"hru":0,"sru":512110190592,"cru":8,"mru":33554432000},
      "Interfaces":[{"name":"zos","mac":"aa:bb:cc:dd:ee:ff","ips":["10.0.0.5","2a02::1"]}],
      "secure_boot":false,"virtualized":false,"serial_number":"ABC123",
      "last_seen":"0001-01-01T00:00:00Z","online":false,"created_at":"2025-06-02T14:06:14.123456Z",
      "updated_at":"2025-06-02T14:06:14.123456Z","approved":false}"#;
    let n: Node = serde_json::from_str(body).unwrap();
    assert_eq!(n.interfaces[0].ips, ["10.0.0.5", "2a02::1"]);
    assert!(n.last_seen.is_zero());
    let out = serde_json::to_value(&n).unwrap();
    assert!(
        out.get("Interfaces").is_some() && out.get("interfaces").is_none(),
        "{out}"
    );
    assert_eq!(out["created_at"], "2025-06-02T14:06:14.123456Z");
    assert_eq!(out["last_seen"], "0001-01-01T00:00:00Z");
    // lower-case key and legacy string ips are read too; null last_seen is the zero time
    let n2: Node = serde_json::from_str(
        r#"{"node_id":1,"farm_id":1,"twin_id":1,"last_seen":null,"interfaces":[{"name":"zos","mac":"m","ips":"1.2.3.4/::1"}]}"#,
    )
    .unwrap();
    assert_eq!(
        n2.interfaces,
        [Interface {
            name: "zos".into(),
            mac: "m".into(),
            ips: vec!["1.2.3.4".into(), "::1".into()]
        }]
    );
    let n3: Node = serde_json::from_str(
        r#"{"node_id":1,"farm_id":1,"twin_id":1,"Interfaces":[{"name":"z","mac":"m","ips":""}]}"#,
    )
    .unwrap();
    assert!(n3.interfaces[0].ips.is_empty());
    let err = serde_json::from_str::<NodeRegistration>(
        r#"{"twin_id":1,"farm_id":1,"interfaces":[{"ips":5}]}"#,
    )
    .unwrap_err();
    assert!(err.to_string().contains("ips"), "{err}");
}

#[test]
fn node_info_diff_touches_only_changed_owned_fields() {
    let a = NodeInfo {
        farm_id: 1,
        secure_boot: true,
        serial_number: "S".into(),
        ..Default::default()
    };
    assert_eq!(a.diff(&a.clone()), None);
    let mut b = a.clone();
    b.secure_boot = false;
    let d = b.diff(&a).unwrap();
    assert_eq!(d.secure_boot, Some(false));
    assert_eq!(
        (d.farm_id, d.serial_number.as_deref(), d.interfaces.as_ref()),
        (None, None, None)
    );
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(json, serde_json::json!({"secure_boot": false}));
}
