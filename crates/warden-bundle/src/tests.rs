//! Tamper cases: every one is refused.

use std::io::Read as _;

use crate::format::{MANIFEST_PATH, SIGNATURE_PATH};
use crate::{BundleBuilder, BundleError, SecretKey, Verifier};

const CLINIC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic");
const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../policies/clinic-data");

fn signed(revision: u64, key: &SecretKey) -> Vec<u8> {
    BundleBuilder::new(revision)
        .created(1_700_000_000)
        .package(CLINIC)
        .unwrap()
        .package(DATA)
        .unwrap()
        .build(Some(key))
        .unwrap()
}

/// The archive's entries, in order.
fn entries(bytes: &[u8]) -> Vec<(String, Vec<u8>, tar::EntryType)> {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut tar)
        .unwrap();
    let mut archive = tar::Archive::new(tar.as_slice());
    archive
        .entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let kind = e.header().entry_type();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            (path, content, kind)
        })
        .collect()
}

/// Packs entries again, as an attacker would after changing them.
fn pack(entries: &[(String, Vec<u8>, tar::EntryType)]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    for (path, content, kind) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_size(content.len() as u64);
        header.set_mode(0o644);
        header.set_entry_type(*kind);
        if *kind == tar::EntryType::Symlink {
            header.set_size(0);
            tar.append_link(&mut header, path, "/etc/passwd").unwrap();
        } else {
            // `append_data` refuses `..`; write the raw name the way a hostile tool would.
            let name = header.as_gnu_mut().unwrap();
            name.name.fill(0);
            name.name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            tar.append(&header, content.as_slice()).unwrap();
        }
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn edit(bytes: &[u8], f: impl FnOnce(&mut Vec<(String, Vec<u8>, tar::EntryType)>)) -> Vec<u8> {
    let mut all = entries(bytes);
    f(&mut all);
    pack(&all)
}

#[test]
fn a_signed_bundle_verifies_and_names_its_packages_and_signer() {
    let key = SecretKey::generate().unwrap();
    let bundle = Verifier::new(vec![key.public_key()])
        .verify(&signed(3, &key))
        .unwrap();
    assert_eq!(bundle.revision(), 3);
    assert_eq!(bundle.signed_by(), Some(key.public_key().id().as_str()));
    let ids: Vec<_> = bundle
        .manifest()
        .packages
        .iter()
        .map(|p| p.id.as_str())
        .collect();
    assert_eq!(ids, ["clinic", "clinic-data"]);
    assert_eq!(bundle.manifest().packages[1].engine, "rego");
    assert!(
        bundle
            .manifest()
            .files
            .iter()
            .any(|f| f.path == "clinic/clinic.rego")
    );
    // Repacking the same entries is the same bundle: the digest is the manifest's.
    let again = Verifier::new(vec![key.public_key()])
        .verify(&edit(&signed(3, &key), |_| {}))
        .unwrap();
    assert_eq!(again.digest(), bundle.digest());
}

#[test]
fn the_same_packages_and_revision_give_the_same_digest() {
    let one = SecretKey::generate().unwrap();
    let two = SecretKey::generate().unwrap();
    let a = Verifier::unsigned().verify(&signed(5, &one)).unwrap();
    let b = Verifier::unsigned().verify(&signed(5, &two)).unwrap();
    let c = Verifier::unsigned().verify(&signed(6, &one)).unwrap();
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
}

#[test]
fn a_changed_file_is_refused_by_its_digest() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    let tampered = edit(&signed(1, &key), |all| {
        let rego = all
            .iter_mut()
            .find(|e| e.0 == "clinic/clinic.rego")
            .unwrap();
        rego.1.extend_from_slice(b"\nallow := true\n");
    });
    let error = verifier.verify(&tampered).unwrap_err();
    assert!(
        matches!(&error, BundleError::Digest { path } if path == "clinic/clinic.rego"),
        "{error}"
    );
    // The same length, one byte flipped.
    let flipped = edit(&signed(1, &key), |all| {
        let data = all.iter_mut().find(|e| e.0 == "clinic/data.json").unwrap();
        data.1[0] ^= 1;
    });
    assert!(matches!(
        verifier.verify(&flipped),
        Err(BundleError::Digest { .. })
    ));
    // Unsigned mode still checks digests.
    assert!(matches!(
        Verifier::unsigned().verify(&tampered),
        Err(BundleError::Digest { .. })
    ));
}

#[test]
fn a_changed_manifest_breaks_the_signature() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    // Raise the revision, and change a digest to match a changed file: both need a new manifest.
    let raised = edit(&signed(1, &key), |all| {
        let manifest = all.iter_mut().find(|e| e.0 == MANIFEST_PATH).unwrap();
        let text = String::from_utf8(manifest.1.clone()).unwrap();
        manifest.1 = text
            .replace("\"revision\": 1", "\"revision\": 99")
            .into_bytes();
    });
    let error = verifier.verify(&raised).unwrap_err();
    assert!(matches!(error, BundleError::Signature(_)), "{error}");
}

#[test]
fn a_signature_from_another_bundle_or_key_is_refused() {
    let key = SecretKey::generate().unwrap();
    let other = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    // The genuine signature of revision 1 on the manifest of revision 2.
    let signature_of_1 = entries(&signed(1, &key))
        .into_iter()
        .find(|e| e.0 == SIGNATURE_PATH)
        .unwrap();
    let swapped = edit(&signed(2, &key), |all| {
        let slot = all.iter_mut().find(|e| e.0 == SIGNATURE_PATH).unwrap();
        *slot = signature_of_1;
    });
    assert!(matches!(
        verifier.verify(&swapped),
        Err(BundleError::Signature(_))
    ));
    // Signed by a key that is not configured.
    let error = verifier.verify(&signed(1, &other)).unwrap_err();
    assert!(
        error.to_string().contains("not a configured key"),
        "{error}"
    );
    // Signed by another key, claiming the configured key's id.
    let forged = edit(&signed(1, &other), |all| {
        let slot = all.iter_mut().find(|e| e.0 == SIGNATURE_PATH).unwrap();
        let text = String::from_utf8(slot.1.clone()).unwrap();
        slot.1 = text
            .replace(&other.public_key().id(), &key.public_key().id())
            .into_bytes();
    });
    let error = verifier.verify(&forged).unwrap_err();
    assert!(error.to_string().contains("not made by key"), "{error}");
    // Garbage where the signature goes.
    let garbage = edit(&signed(1, &key), |all| {
        let slot = all.iter_mut().find(|e| e.0 == SIGNATURE_PATH).unwrap();
        slot.1 = br#"{"algorithm":"ed25519","key_id":"x","signature":"!!"}"#.to_vec();
    });
    assert!(matches!(
        verifier.verify(&garbage),
        Err(BundleError::Signature(_))
    ));
    // Either of two configured keys (rotation) is enough.
    let both = Verifier::new(vec![other.public_key(), key.public_key()]);
    assert!(both.verify(&signed(1, &key)).is_ok());
}

#[test]
fn an_unsigned_bundle_is_refused_when_a_key_is_configured() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    let unsigned = BundleBuilder::new(1)
        .package(CLINIC)
        .unwrap()
        .build(None)
        .unwrap();
    assert!(matches!(
        verifier.verify(&unsigned),
        Err(BundleError::Unsigned)
    ));
    // Dropping the signature of a signed bundle is the same case.
    let stripped = edit(&signed(1, &key), |all| {
        all.retain(|e| e.0 != SIGNATURE_PATH)
    });
    assert!(matches!(
        verifier.verify(&stripped),
        Err(BundleError::Unsigned)
    ));
    assert!(Verifier::unsigned().verify(&unsigned).is_ok());
}

#[test]
fn every_truncation_of_a_bundle_is_refused() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    let bytes = signed(1, &key);
    for cut in 0..bytes.len() {
        let result = verifier.verify(&bytes[..cut]);
        assert!(
            result.is_err(),
            "a bundle cut at {cut} of {} verified",
            bytes.len()
        );
    }
    // Cut inside the tar, with a valid gzip around what is left.
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bytes.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    for cut in (0..tar.len()).step_by(512) {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar[..cut]).unwrap();
        let rewrapped = gz.finish().unwrap();
        assert!(
            verifier.verify(&rewrapped).is_err(),
            "a tar cut at {cut} verified"
        );
    }
}

#[test]
fn files_the_manifest_does_not_list_or_that_are_missing_are_refused() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    let extra = edit(&signed(1, &key), |all| {
        all.push((
            "clinic/extra.rego".into(),
            b"package x".to_vec(),
            tar::EntryType::Regular,
        ));
    });
    let error = verifier.verify(&extra).unwrap_err();
    assert!(error.to_string().contains("does not list"), "{error}");
    let missing = edit(&signed(1, &key), |all| {
        all.retain(|e| e.0 != "clinic/data.json")
    });
    let error = verifier.verify(&missing).unwrap_err();
    assert!(error.to_string().contains("does not hold"), "{error}");
    let twice = edit(&signed(1, &key), |all| {
        let copy = all
            .iter()
            .find(|e| e.0 == "clinic/data.json")
            .unwrap()
            .clone();
        all.push(copy);
    });
    assert!(verifier.verify(&twice).is_err());
}

#[test]
fn unsafe_paths_and_links_are_refused() {
    let key = SecretKey::generate().unwrap();
    let verifier = Verifier::new(vec![key.public_key()]);
    for path in ["../escape.rego", "/etc/cron.d/x", "clinic/../../x"] {
        let hostile = edit(&signed(1, &key), |all| {
            all.push((path.into(), b"x".to_vec(), tar::EntryType::Regular));
        });
        let error = verifier.verify(&hostile).unwrap_err();
        assert!(error.to_string().contains("unsafe path"), "{path}: {error}");
    }
    let link = edit(&signed(1, &key), |all| {
        all.push(("clinic/link".into(), Vec::new(), tar::EntryType::Symlink));
    });
    let error = verifier.verify(&link).unwrap_err();
    assert!(error.to_string().contains("not a regular file"), "{error}");
}

#[test]
fn extraction_writes_exactly_the_package_files() {
    let key = SecretKey::generate().unwrap();
    let bundle = Verifier::new(vec![key.public_key()])
        .verify(&signed(1, &key))
        .unwrap();
    let dir = std::env::temp_dir().join(format!("warden-bundle-extract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    bundle.extract_package("clinic", &dir).unwrap();
    let original = std::fs::read(format!("{CLINIC}/clinic.rego")).unwrap();
    assert_eq!(std::fs::read(dir.join("clinic.rego")).unwrap(), original);
    assert!(!dir.join("clinic_data.rego").exists());
    assert!(dir.join("requests").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_package_without_a_manifest_or_with_a_bad_id_is_not_built() {
    let dir = std::env::temp_dir().join(format!("warden-bundle-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("p.rego"), "package p\n").unwrap();
    assert!(matches!(
        BundleBuilder::new(1).package(&dir),
        Err(BundleError::Io { .. })
    ));
    std::fs::write(dir.join("warden.toml"), "id = \"../up\"\nversion = \"1\"\n").unwrap();
    let error = BundleBuilder::new(1).package(&dir).unwrap_err();
    assert!(error.to_string().contains("may hold only"), "{error}");
    std::fs::write(
        dir.join("warden.toml"),
        "id = \"p\"\nversion = \"1\"\nregions = [\"eu\"]\n",
    )
    .unwrap();
    let bytes = BundleBuilder::new(1)
        .package(&dir)
        .unwrap()
        .build(None)
        .unwrap();
    let bundle = Verifier::unsigned().verify(&bytes).unwrap();
    assert_eq!(bundle.manifest().packages[0].regions, ["eu"]);
    std::fs::remove_dir_all(&dir).unwrap();
}
