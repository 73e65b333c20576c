//! The payment functions' code, shipped inside the payops binary, and the
//! zips Lambda runs.
//!
//! The zips are deterministic (entries in a fixed order, a fixed timestamp,
//! fixed permissions, no compression), so the same sources always give the
//! same bytes and therefore the same `CodeSha256`: `up` compares it with what
//! Lambda reports and uploads code only when the sources changed.

use sha2::{Digest, Sha256};

use super::vendored_driver;

/// Modules every function imports.
const SHARED: [(&str, &str); 1] = [(
    "payops_lib.py",
    include_str!("../../../lambda/payops_lib.py"),
)];

/// Each function's handler module, `<module>.py`, whose `handler` Lambda calls.
pub const VALIDATION: (&str, &str) = (
    "payment_validation",
    include_str!("../../../lambda/payment_validation.py"),
);
pub const FRAUD: (&str, &str) = (
    "fraud_detection",
    include_str!("../../../lambda/fraud_detection.py"),
);
pub const TRANSACTION: (&str, &str) = (
    "transaction_processing",
    include_str!("../../../lambda/transaction_processing.py"),
);
pub const ROTATION: (&str, &str) = (
    "secret_rotation",
    include_str!("../../../lambda/secret_rotation.py"),
);

pub const QUEUE_CONSUMER: (&str, &str) = (
    "payment_queue_consumer",
    include_str!("../../../lambda/payment_queue_consumer.py"),
);
/// The customer database's schema migration (function `db-migration`, which
/// the `db-schema` step invokes during `up`).
pub const DB_MIGRATION: (&str, &str) = (
    "db_migration",
    include_str!("../../../lambda/db_migration.py"),
);

/// The handler modules that connect to the database: their zips also carry
/// `payops_db.py` and the vendored PostgreSQL driver (pg8000 and its pure
/// Python dependencies, `lambda/requirements-db.lock`), about 1.3 MB that the
/// other functions do without.
const DATABASE_MODULES: [&str; 2] = [VALIDATION.0, DB_MIGRATION.0];
const DATABASE_ACCESS: (&str, &str) =
    ("payops_db.py", include_str!("../../../lambda/payops_db.py"));

pub const LOG_TRANSFORM: (&str, &str) = (
    "transaction_log_transform",
    include_str!("../../../lambda/transaction_log_transform.py"),
);

/// AWS Config's remediation (function `config-remediation`, invoked by the
/// env's compliance rule).
pub const CONFIG_REMEDIATION: (&str, &str) = (
    "config_remediation",
    include_str!("../../../lambda/config_remediation.py"),
);

/// A function's deployment package.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub zip: Vec<u8>,
    /// What Lambda reports as `CodeSha256`: base64 of the zip's SHA-256.
    pub sha256: String,
    /// `<module>.handler`.
    pub handler: String,
}

/// The package of the function whose handler module is `module`.
pub fn package((module, source): (&str, &str)) -> Package {
    let handler_file = format!("{module}.py");
    let mut files: Vec<(&str, &[u8])> = SHARED.iter().map(|(n, s)| (*n, s.as_bytes())).collect();
    files.push((&handler_file, source.as_bytes()));
    if DATABASE_MODULES.contains(&module) {
        files.push((DATABASE_ACCESS.0, DATABASE_ACCESS.1.as_bytes()));
        files.extend(vendored_driver::FILES.iter().copied());
    }
    let zip = stored_zip(&files);
    Package {
        sha256: aws_smithy_types::base64::encode(Sha256::digest(&zip)),
        zip,
        handler: format!("{module}.handler"),
    }
}

// 1980-01-01 00:00:00, the earliest time a zip can hold: the same for every build.
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1;
/// Regular file, rw-r--r--: the Lambda runtime user must be able to read it.
const UNIX_MODE: u32 = 0o100_644;
/// "Made by" Unix (3) so readers honour the mode, zip spec 2.0.
const VERSION_MADE_BY: u16 = (3 << 8) | 20;
const VERSION_NEEDED: u16 = 20;

/// A zip of `files` (sorted by name), stored without compression: a few
/// kilobytes of Python need none, and storing keeps the bytes reproducible
/// without depending on a compressor's version.
pub fn stored_zip(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut files = files.to_vec();
    files.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in &files {
        let offset = u32::try_from(out.len()).expect("a small zip");
        let crc = crc32fast::hash(data);
        let size = u32::try_from(data.len()).expect("a small file");
        let name_len = u16::try_from(name.len()).expect("a short name");

        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        for v in [VERSION_NEEDED, 0, 0, DOS_TIME, DOS_DATE] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&name_len.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);

        central.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        for v in [VERSION_MADE_BY, VERSION_NEEDED, 0, 0, DOS_TIME, DOS_DATE] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        for v in [crc, size, size] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        // Name length, extra length, comment length, disk number, internal attributes.
        for v in [name_len, 0, 0, 0, 0] {
            central.extend_from_slice(&v.to_le_bytes());
        }
        central.extend_from_slice(&(UNIX_MODE << 16).to_le_bytes());
        central.extend_from_slice(&offset.to_le_bytes());
        central.extend_from_slice(name.as_bytes());
    }
    let central_offset = u32::try_from(out.len()).expect("a small zip");
    let central_size = u32::try_from(central.len()).expect("a small zip");
    let count = u16::try_from(files.len()).expect("a few files");
    out.extend_from_slice(&central);
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    for v in [0u16, 0, count, count] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&central_size.to_le_bytes());
    out.extend_from_slice(&central_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the entries back the way any unzip does: through the central directory.
    fn entries(zip: &[u8]) -> Vec<(String, Vec<u8>, u32)> {
        let u16_at = |i: usize| u16::from_le_bytes([zip[i], zip[i + 1]]);
        let u32_at = |i: usize| u32::from_le_bytes(zip[i..i + 4].try_into().unwrap());
        let end = zip.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50, "end of central directory");
        let count = usize::from(u16_at(end + 10));
        let mut at = u32_at(end + 16) as usize;
        let mut out = Vec::new();
        for _ in 0..count {
            assert_eq!(u32_at(at), 0x0201_4b50);
            assert_eq!(u16_at(at + 10), 0, "stored");
            let crc = u32_at(at + 16);
            let size = u32_at(at + 20) as usize;
            let name_len = usize::from(u16_at(at + 28));
            let mode = u32_at(at + 38) >> 16;
            let local = u32_at(at + 42) as usize;
            let name = String::from_utf8(zip[at + 46..at + 46 + name_len].to_vec()).unwrap();
            assert_eq!(u32_at(local), 0x0403_4b50);
            let data_at = local + 30 + usize::from(u16_at(local + 26));
            let data = zip[data_at..data_at + size].to_vec();
            assert_eq!(crc32fast::hash(&data), crc, "{name}");
            out.push((name, data, mode));
            at += 46 + name_len;
        }
        out
    }

    #[test]
    fn packages_hold_the_handler_and_the_shared_module() {
        let p = package(TRANSACTION);
        assert_eq!(p.handler, "transaction_processing.handler");
        let e = entries(&p.zip);
        let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
        assert_eq!(names, ["payops_lib.py", "transaction_processing.py"]);
        assert_eq!(e[1].1, TRANSACTION.1.as_bytes());
        assert!(e.iter().all(|(_, _, mode)| *mode == 0o100_644));
    }

    #[test]
    fn database_functions_carry_the_driver_and_the_others_do_not() {
        for f in [VALIDATION, DB_MIGRATION] {
            let e = entries(&package(f).zip);
            let names: Vec<&str> = e.iter().map(|(n, _, _)| n.as_str()).collect();
            for needed in [
                "payops_db.py",
                "pg8000/native.py",
                "scramp/core.py",
                "asn1crypto/x509.py",
                "dateutil/parser/_parser.py",
                "six.py",
            ] {
                assert!(names.contains(&needed), "{}: {needed}", f.0);
            }
            // Importable as Lambda unpacks it: packages at the zip's root.
            assert!(names.contains(&"pg8000/__init__.py"));
            assert!(!names.iter().any(|n| n.contains("__pycache__")));
        }
        for f in [FRAUD, TRANSACTION, ROTATION, QUEUE_CONSUMER] {
            let e = entries(&package(f).zip);
            assert_eq!(e.len(), 2, "{}", f.0);
        }
    }

    /// The list compiled into the binary is exactly what lambda/vendor holds,
    /// so a re-vendored driver cannot ship half old, half new.
    #[test]
    fn the_vendored_list_matches_the_vendor_directory() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.file_name().is_some_and(|n| n == "__pycache__") {
                    continue;
                }
                if path.is_dir() {
                    walk(&path, root, out);
                } else {
                    let rel = path.strip_prefix(root).unwrap();
                    out.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("lambda/vendor");
        let mut on_disk = Vec::new();
        walk(&root, &root, &mut on_disk);
        on_disk.sort();
        let listed: Vec<String> = vendored_driver::FILES
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        assert_eq!(listed, on_disk);
        // Pinned in the lock: the versions the docs name.
        for dist in ["pg8000-1.31.6.dist-info", "scramp-1.5.0.dist-info"] {
            assert!(listed.iter().any(|n| n.starts_with(dist)), "{dist}");
        }
    }

    #[test]
    fn the_same_sources_give_the_same_bytes_and_hash() {
        for f in [VALIDATION, FRAUD, TRANSACTION, DB_MIGRATION] {
            assert_eq!(package(f), package(f));
        }
        assert_ne!(package(VALIDATION).sha256, package(FRAUD).sha256);
        // The order files are given in does not matter either.
        let a = stored_zip(&[("a.py", b"1"), ("b.py", b"2")]);
        let b = stored_zip(&[("b.py", b"2"), ("a.py", b"1")]);
        assert_eq!(a, b);
    }

    #[test]
    fn the_hash_is_what_lambda_reports() {
        // Lambda's CodeSha256: base64 (standard, padded) of the zip's SHA-256.
        let p = package(VALIDATION);
        assert_eq!(p.sha256.len(), 44);
        assert!(p.sha256.ends_with('='));
        let expected = aws_smithy_types::base64::encode(Sha256::digest(&p.zip));
        assert_eq!(p.sha256, expected);
    }
}
