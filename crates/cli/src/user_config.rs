//! The user config `keyplane login` writes and every API command reads (after the flags and
//! the environment): `$XDG_CONFIG_HOME/keyplane/config.toml`, else `~/.config/keyplane/config.toml`.
//! It holds an application token, so it is written owner-only (0600, in a 0700 directory),
//! through a temporary file and a rename, and the token never appears in `Debug` or output.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What `keyplane login` saved.
pub struct UserConfig {
    pub path: PathBuf,
    pub api_url: String,
    pub token: Zeroizing<String>,
    pub org_id: Option<String>,
}

impl std::fmt::Debug for UserConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserConfig")
            .field("path", &self.path)
            .field("api_url", &self.api_url)
            .field("token", &"<redacted>")
            .field("org_id", &self.org_id)
            .finish()
    }
}

/// The file's form. Its token string is wiped by [`Zeroizing`] wrappers around every text
/// that holds it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileForm {
    api_url: String,
    token: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    org_id: Option<String>,
}

impl Drop for FileForm {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.token);
    }
}

/// Where the config lives; `None` when neither `XDG_CONFIG_HOME` nor `HOME` says.
pub fn path() -> Option<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|h| h.join(".config"))
    })?;
    Some(base.join("keyplane").join("config.toml"))
}

/// The saved login, if any.
pub fn load() -> anyhow::Result<Option<UserConfig>> {
    let Some(path) = path() else {
        return Ok(None);
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => Zeroizing::new(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    warn_if_shared(&path);
    let form: FileForm = toml::from_str(&text).with_context(|| {
        format!(
            "parsing {} (written by `keyplane login`; `keyplane logout` removes it)",
            path.display()
        )
    })?;
    Ok(Some(UserConfig {
        api_url: form.api_url.clone(),
        token: Zeroizing::new(form.token.clone()),
        org_id: form.org_id.clone(),
        path,
    }))
}

/// A token others can read is no longer only the user's: say so, as ssh does for keys.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} holds a token and is readable by others; run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}

/// Saves a login, replacing any earlier one; returns where.
pub fn save(api_url: &str, token: &str, org_id: Option<&str>) -> anyhow::Result<PathBuf> {
    let Some(path) = path() else {
        bail!("cannot tell where to save the login: set HOME or XDG_CONFIG_HOME");
    };
    let form = FileForm {
        api_url: api_url.to_string(),
        token: token.to_string(),
        org_id: org_id.map(str::to_string),
    };
    let body = Zeroizing::new(format!(
        "# Written by `keyplane login`. It holds an application token: keep it private.\n{}",
        Zeroizing::new(toml::to_string(&form).context("writing the login as TOML")?).as_str()
    ));
    let dir = path
        .parent()
        .context("the config path has no parent directory")?;
    create_private_dir(dir)?;
    write_private(&path, body.as_bytes())?;
    Ok(path)
}

/// Removes the saved login; returns the file removed, if there was one.
pub fn remove() -> anyhow::Result<Option<PathBuf>> {
    let Some(path) = path() else {
        return Ok(None);
    };
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(Some(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
    }
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

/// Writes via a temporary file created 0600 and a rename, so the token is never in a file
/// others can read and a crash never leaves half a file.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("toml.tmp");
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts
            .open(&tmp)
            .with_context(|| format!("writing {}", tmp.display()))?;
        // A leftover temporary file of another mode keeps its mode when reopened.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
