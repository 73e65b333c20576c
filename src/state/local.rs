//! The local state backend: `<dir>/<region>/<env>.json`, written atomically,
//! guarded by an advisory lock on `<dir>/<region>/<env>.lock`.
//!
//! The region is part of the key because the same env name in two regions
//! of one account is two envs (a DR twin): older versions kept
//! `<dir>/<env>.json`, which refused the second region from the same
//! directory. Such a file is moved under its region the first time this
//! version reads it in that region; in any other region it is left alone.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{EnvLock, EnvState, StateBackend, StateError};

#[derive(Clone, Debug)]
pub struct LocalStore {
    dir: PathBuf,
    /// Where older versions kept the region's states (`<dir>/<env>.json`),
    /// and the region they must record to be this store's.
    legacy: Option<(PathBuf, String)>,
}

/// Held for the whole of a mutating command; dropping it (or the process
/// dying, even by SIGKILL) releases the OS lock.
#[derive(Debug)]
pub struct LocalLock {
    _file: File,
}

#[async_trait]
impl EnvLock for LocalLock {
    async fn release(self: Box<Self>) {}
}

impl LocalStore {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            legacy: None,
        }
    }

    /// The states of `region` under `dir` (`<dir>/<region>/`), taking over
    /// the region's states an older version kept in `dir` itself.
    pub fn regional(dir: impl Into<PathBuf>, region: &str) -> Self {
        let dir = dir.into();
        Self {
            dir: dir.join(region),
            legacy: Some((dir, region.to_owned())),
        }
    }

    pub fn path(&self, env: &str) -> PathBuf {
        self.dir.join(format!("{env}.json"))
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
        move |source| StateError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    fn load_sync(&self, env: &str) -> Result<Option<EnvState>, StateError> {
        if let Some(state) = Self::read(&self.path(env), env)? {
            return Ok(Some(state));
        }
        let Some((dir, region)) = &self.legacy else {
            return Ok(None);
        };
        // An older version's file: this region's is moved here (a rename,
        // atomic), another region's is that region's to take.
        let old = dir.join(format!("{env}.json"));
        match Self::read(&old, env)? {
            Some(state) if super::of_region(&state, region) => {
                fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
                let path = self.path(env);
                fs::rename(&old, &path).map_err(Self::io(&path))?;
                Ok(Some(state))
            }
            _ => Ok(None),
        }
    }

    fn read(path: &Path, env: &str) -> Result<Option<EnvState>, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Self::io(path)(e)),
        };
        let shown = path.display().to_string();
        let way_out = format!("mv {shown} {shown}.broken");
        super::parse(&text, env, &shown, way_out).map(Some)
    }

    /// Names of the `*.json` files in `dir`.
    fn names_in(dir: &Path) -> Result<Vec<String>, StateError> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::io(dir)(e)),
        };
        Ok(entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
            .filter(|n| !n.starts_with('.'))
            .collect())
    }

    /// Write-then-rename, so a crash leaves the old file or the new one, never
    /// half of one.
    fn save_sync(&self, state: &EnvState) -> Result<(), StateError> {
        let path = self.path(&state.env);
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let tmp = self
            .dir
            .join(format!(".{}.json.tmp-{}", state.env, std::process::id()));
        let mut json = serde_json::to_vec_pretty(state).expect("state serialises");
        json.push(b'\n');
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(Self::io(&path))
    }

    fn remove_sync(&self, env: &str) -> Result<(), StateError> {
        let path = self.path(env);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::io(&path)(e)),
        }
    }

    fn lock_path(&self, env: &str) -> PathBuf {
        self.dir.join(format!("{env}.lock"))
    }

    fn lock_sync(&self, env: &str, holder: &str) -> Result<LocalLock, StateError> {
        fs::create_dir_all(&self.dir).map_err(Self::io(&self.dir))?;
        let path = self.lock_path(env);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(Self::io(&path))?;
        match file.try_lock() {
            Ok(()) => {
                let mut write = || -> std::io::Result<()> {
                    file.set_len(0)?;
                    file.rewind()?;
                    file.write_all(holder.as_bytes())?;
                    file.flush()
                };
                write().map_err(Self::io(&path))?;
                Ok(LocalLock { _file: file })
            }
            Err(TryLockError::WouldBlock) => {
                let mut current = String::new();
                let _ = file.read_to_string(&mut current);
                let holder = match current.trim() {
                    "" => "holder unknown".to_owned(),
                    h => h.to_owned(),
                };
                Err(StateError::Locked {
                    env: env.to_owned(),
                    holder,
                })
            }
            Err(TryLockError::Error(e)) => Err(Self::io(&path)(e)),
        }
    }
}

#[async_trait]
impl StateBackend for LocalStore {
    fn location(&self, env: &str) -> String {
        self.path(env).display().to_string()
    }

    async fn load(&self, env: &str) -> Result<Option<EnvState>, StateError> {
        self.load_sync(env)
    }

    async fn save(&self, state: &EnvState) -> Result<(), StateError> {
        self.save_sync(state)
    }

    async fn remove(&self, env: &str) -> Result<(), StateError> {
        self.remove_sync(env)
    }

    async fn lock(&self, env: &str, holder: &str) -> Result<Box<dyn EnvLock>, StateError> {
        Ok(Box::new(self.lock_sync(env, holder)?))
    }

    /// An OS lock cannot be broken from outside, and it dies with its holder:
    /// if it is held, the holder is alive and must be stopped instead.
    async fn unlock(&self, env: &str) -> Result<Option<String>, StateError> {
        if !self.lock_path(env).exists() {
            return Ok(None);
        }
        drop(self.lock_sync(env, "payops unlock")?);
        Ok(None)
    }

    async fn envs(&self) -> Result<Vec<String>, StateError> {
        let mut envs = Self::names_in(&self.dir)?;
        // An older version's files of this region (not yet moved).
        if let Some((dir, region)) = &self.legacy {
            for env in Self::names_in(dir)? {
                let path = dir.join(format!("{env}.json"));
                if let Ok(Some(state)) = Self::read(&path, &env)
                    && super::of_region(&state, region)
                {
                    envs.push(env);
                }
            }
        }
        envs.sort();
        envs.dedup();
        Ok(envs)
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::Record;
    use crate::state::StepState;

    use super::*;

    fn sample() -> EnvState {
        let mut s = EnvState::new("pr1", "us-east-1", "123456789012");
        s.steps.insert(
            "vpc".into(),
            StepState {
                record: Record::default()
                    .resource("vpc", "vpc-1")
                    .output("VpcId", "vpc-1"),
                updated_at: "t".into(),
            },
        );
        s
    }

    #[test]
    fn saves_and_loads_atomically_leaving_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        assert_eq!(store.load_sync("pr1").unwrap(), None);
        store.save_sync(&sample()).unwrap();
        assert_eq!(store.load_sync("pr1").unwrap(), Some(sample()));
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["pr1.json"]);
    }

    #[test]
    fn a_corrupt_file_is_reported_with_a_way_out_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        fs::write(store.path("pr1"), "{ not json").unwrap();
        let err = store.load_sync("pr1").unwrap_err().to_string();
        assert!(err.contains("not valid JSON"), "{err}");
        assert!(err.contains("mv "), "{err}");
        assert_eq!(fs::read_to_string(store.path("pr1")).unwrap(), "{ not json");
    }

    #[test]
    fn a_state_file_for_another_env_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let mut s = sample();
        s.env = "pr2".into();
        fs::write(store.path("pr1"), serde_json::to_string(&s).unwrap()).unwrap();
        assert!(matches!(
            store.load_sync("pr1"),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn a_second_lock_fails_fast_naming_the_holder_and_is_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let first = store.lock_sync("pr1", "pid 42 on ci-7: up").unwrap();
        match store.lock_sync("pr1", "pid 43") {
            Err(StateError::Locked { holder, .. }) => assert_eq!(holder, "pid 42 on ci-7: up"),
            other => panic!("expected Locked, got {other:?}"),
        }
        // Another env is independent.
        let _other = store.lock_sync("pr2", "pid 44").unwrap();
        drop(first);
        store.lock_sync("pr1", "pid 45").unwrap();
    }

    #[tokio::test]
    async fn an_older_versions_state_moves_under_its_region_and_no_other() {
        let dir = tempfile::tempdir().unwrap();
        // Written by a version that kept `<dir>/<env>.json`.
        LocalStore::new(dir.path()).save_sync(&sample()).unwrap();
        let old = dir.path().join("pr1.json");
        // Another region's run leaves it alone: the env there is another.
        let west = LocalStore::regional(dir.path(), "us-west-2");
        assert_eq!(west.load_sync("pr1").unwrap(), None);
        assert!(old.exists());
        let east = LocalStore::regional(dir.path(), "us-east-1");
        assert_eq!(east.envs().await.unwrap(), ["pr1"]);
        assert!(west.envs().await.unwrap().is_empty());
        // Its own region's run moves it.
        assert_eq!(east.load_sync("pr1").unwrap(), Some(sample()));
        assert!(!old.exists());
        assert!(dir.path().join("us-east-1/pr1.json").exists());
        // The twin in us-west-2 now has a state of its own beside it.
        let mut twin = sample();
        twin.region = "us-west-2".into();
        west.save_sync(&twin).unwrap();
        assert_eq!(west.load_sync("pr1").unwrap(), Some(twin));
        assert_eq!(east.load_sync("pr1").unwrap(), Some(sample()));
        // And their locks are independent.
        let _east = east.lock_sync("pr1", "east").unwrap();
        let _west = west.lock_sync("pr1", "west").unwrap();
    }
}
