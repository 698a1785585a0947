//! Sandbox seeding: idempotent, refuses a farm name owned by someone else, writes nothing when it fails.

use zos_grid::keys::{DEV_PHRASE, KeyPair, Scheme};
use zos_grid::models::ZosVersion;
use zos_registrar_server::Store;
use zos_registrar_server::bootstrap::{SeedError, seed_farm, seed_zos_version};

const NOW: i64 = 1_700_000_000_000_000_000;

#[test]
fn seed_farm_is_idempotent_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("r.db");
    let farmer = KeyPair::from_uri(DEV_PHRASE, Scheme::Ed25519).unwrap();
    let first = {
        let store = Store::open(db.to_str().unwrap()).unwrap();
        seed_farm(&store, Some(&farmer), "sandboxfarm", None, NOW).unwrap()
    };
    assert!(first.created_account && first.created_farm);
    let store = Store::open(db.to_str().unwrap()).unwrap();
    let again = seed_farm(&store, Some(&farmer), "sandboxfarm", None, NOW).unwrap();
    assert_eq!(
        (
            again.twin_id,
            again.farm_id,
            again.created_account,
            again.created_farm
        ),
        (first.twin_id, first.farm_id, false, false)
    );
    // without a key, the existing farm is taken as is
    let anon = seed_farm(&store, None, "sandboxfarm", None, NOW).unwrap();
    assert_eq!((anon.farm_id, anon.created_farm), (first.farm_id, false));
    let farm = store.farm(first.farm_id).unwrap().unwrap();
    assert_eq!(
        farm.stellar_address,
        zos_grid::keys::stellar_address(&farmer.public_key())
    );
    assert_eq!(
        store.account(first.twin_id).unwrap().unwrap().public_key,
        farmer.public_key_base64()
    );
}

#[test]
fn seed_farm_refuses_and_writes_nothing_on_bad_input() {
    let store = Store::open(":memory:").unwrap();
    let a = KeyPair::ed25519_from_seed(&[1; 32]);
    let b = KeyPair::ed25519_from_seed(&[2; 32]);
    let first = seed_farm(&store, Some(&a), "farm1", None, NOW).unwrap();
    let e = seed_farm(&store, Some(&b), "farm1", None, NOW).unwrap_err();
    assert!(
        matches!(e, SeedError::FarmOwnedByOther { owner, twin: None, .. } if owner == first.twin_id),
        "{e}"
    );
    assert!(
        store
            .account_by_public_key(&b.public_key_base64())
            .unwrap()
            .is_none(),
        "no stray account"
    );
    assert!(matches!(
        seed_farm(&store, Some(&b), "bad-name", None, NOW).unwrap_err(),
        SeedError::FarmName(_)
    ));
    assert!(matches!(
        seed_farm(&store, Some(&b), "farm2", Some("GSHORT"), NOW).unwrap_err(),
        SeedError::Stellar(_)
    ));
    assert!(
        store
            .account_by_public_key(&b.public_key_base64())
            .unwrap()
            .is_none()
    );
    assert!(store.farm_by_name("farm2").unwrap().is_none());
    // without a key a missing farm is created under a random one
    let anon = seed_farm(&store, None, "farm3", None, NOW).unwrap();
    assert!(anon.created_farm && anon.created_account && anon.twin_id != first.twin_id);
}

#[test]
fn seed_zos_version_stores_the_wire_form() {
    let store = Store::open(":memory:").unwrap();
    assert!(seed_zos_version(&store, "v4.0.5", true).unwrap());
    assert!(
        !seed_zos_version(&store, "v4.0.5", true).unwrap(),
        "same again: unchanged"
    );
    assert_eq!(
        store.zos_version().unwrap().unwrap(),
        "eyJ2ZXJzaW9uIjoidjQuMC41Iiwic2FmZV90b191cGdyYWRlIjp0cnVlfQ=="
    );
    assert!(seed_zos_version(&store, "v4.0.6", false).unwrap());
    let v = ZosVersion::decode(&store.zos_version().unwrap().unwrap()).unwrap();
    assert_eq!(
        v,
        ZosVersion {
            version: "v4.0.6".into(),
            safe_to_upgrade: false
        }
    );
    assert!(seed_zos_version(&store, " ", true).is_err());
}
