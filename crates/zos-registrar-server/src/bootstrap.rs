//! Non-interactive setup for sandboxes: a farmer account with a farm, and the published zos version.
//! Both are idempotent, so a sandbox can run them on every start.

use zos_grid::keys::{self, KeyPair};
use zos_grid::models::ZosVersion;

use crate::store::{Store, StoreError};

/// Why seeding failed.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("invalid farm name {0:?}: expected 1 to 40 ASCII letters or digits")]
    FarmName(String),
    #[error(
        "invalid stellar address {0:?}: expected 56 upper-case letters and digits starting with G"
    )]
    Stellar(String),
    #[error(
        "farm {name:?} already exists (farm {farm_id}) and belongs to twin {owner}, not to the given farmer key (its twin: {twin:?})"
    )]
    FarmOwnedByOther {
        name: String,
        farm_id: u64,
        owner: u64,
        twin: Option<u64>,
    },
    #[error("invalid zos version: {0}")]
    Version(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`seed_farm`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeded {
    pub twin_id: u64,
    pub farm_id: u64,
    pub created_account: bool,
    pub created_farm: bool,
}

/// Make sure a farm called `name` exists, owned by `farmer`'s account (created if needed). Without a farmer key,
/// an existing farm of that name is taken as is, and a missing one is created under a fresh random key. The
/// stellar address defaults to the one of the owner's key. Nothing is written when an error is returned.
pub fn seed_farm(
    store: &Store,
    farmer: Option<&KeyPair>,
    name: &str,
    stellar_address: Option<&str>,
    now_nanos: i64,
) -> Result<Seeded, SeedError> {
    if name.is_empty() || name.len() > 40 || !name.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return Err(SeedError::FarmName(name.to_string()));
    }
    if let Some(a) = stellar_address {
        check_stellar(a)?;
    }
    let existing_account = match farmer {
        Some(k) => store.account_by_public_key(&k.public_key_base64())?,
        None => None,
    };
    if let Some(farm) = store.farm_by_name(name)? {
        return match (farmer, existing_account) {
            (None, _) => Ok(Seeded {
                twin_id: farm.twin_id,
                farm_id: farm.farm_id,
                created_account: false,
                created_farm: false,
            }),
            (Some(_), Some(a)) if a.twin_id == farm.twin_id => Ok(Seeded {
                twin_id: a.twin_id,
                farm_id: farm.farm_id,
                created_account: false,
                created_farm: false,
            }),
            (Some(_), other) => Err(SeedError::FarmOwnedByOther {
                name: name.to_string(),
                farm_id: farm.farm_id,
                owner: farm.twin_id,
                twin: other.map(|a| a.twin_id),
            }),
        };
    }
    let generated;
    let key = match farmer {
        Some(k) => k,
        None => {
            generated = KeyPair::generate_ed25519();
            &generated
        }
    };
    let stellar = match stellar_address {
        Some(a) => a.to_string(),
        None => keys::stellar_address(&key.public_key()),
    };
    check_stellar(&stellar)?;
    let (account, created_account) = match existing_account {
        Some(a) => (a, false),
        None => (
            store.create_account(&key.public_key_base64(), &[], "", now_nanos)?,
            true,
        ),
    };
    let farm_id = store.create_farm(name, account.twin_id, &stellar, false, now_nanos)?;
    Ok(Seeded {
        twin_id: account.twin_id,
        farm_id,
        created_account,
        created_farm: true,
    })
}

fn check_stellar(a: &str) -> Result<(), SeedError> {
    if a.len() != 56
        || !a.starts_with('G')
        || !a
            .bytes()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    {
        return Err(SeedError::Stellar(a.to_string()));
    }
    Ok(())
}

/// Publish a zos version. Returns false when it was already exactly this.
pub fn seed_zos_version(
    store: &Store,
    version: &str,
    safe_to_upgrade: bool,
) -> Result<bool, SeedError> {
    if version.trim().is_empty() || version.contains(char::is_whitespace) {
        return Err(SeedError::Version(version.to_string()));
    }
    let encoded = ZosVersion {
        version: version.to_string(),
        safe_to_upgrade,
    }
    .encode();
    match store.set_zos_version(&encoded) {
        Ok(()) => Ok(true),
        Err(StoreError::Conflict(_)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}
