//! `cfn-outputs/flat-outputs.json`: one flat JSON object of string values,
//! like CloudFormation stack outputs flattened, for other teams' tests.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

/// Writes the map atomically (sorted keys, so diffs of it are stable).
pub fn write(path: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let mut json = serde_json::to_vec_pretty(values).expect("a string map serialises");
    json.push(b'\n');
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&json)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_a_flat_object_of_strings_creating_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cfn-outputs/flat-outputs.json");
        let values = BTreeMap::from([
            ("VpcId".to_owned(), "vpc-1".to_owned()),
            ("PublicSubnetIds".to_owned(), "subnet-1,subnet-2".to_owned()),
        ]);
        write(&path, &values).unwrap();
        let read: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let obj = read.as_object().unwrap();
        assert_eq!(obj.len(), 2);
        assert!(obj.values().all(serde_json::Value::is_string));
        assert_eq!(obj["VpcId"], "vpc-1");
    }
}
