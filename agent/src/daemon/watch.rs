//! What changes under the daemon without an API call: the configuration
//! file (SIGHUP), namespaces that appear or disappear, the principals file.

// The daemon's types and imports: these methods extend `Daemon`.
use super::*;

impl Daemon {
    /// Rereads `STATE_DIR/principals.json` when it changed (or when
    /// `force`); an invalid file is logged and the current store kept.
    /// In cluster mode the document in etcd stands in for the file.
    pub(super) fn reload_principals(&mut self, force: bool) {
        let path = crate::principals::path(&self.paths.state_dir);
        let mut source = path.display().to_string();
        let loaded = match self.api.as_ref().map(|a| &a.backend) {
            Some(Backend::Cluster(c)) => {
                source = "etcd".into();
                if !force {
                    return;
                }
                match &c.principals {
                    Some(text) => crate::principals::parse(text, "principals in etcd")
                        .map_err(|e| e.to_string()),
                    None => Ok(latticed_proxy::authz::principals::File::default()),
                }
            }
            _ => {
                let seen = crate::principals::modified(&path);
                if !force && seen == self.principals_seen {
                    return;
                }
                self.principals_seen = seen;
                crate::principals::load(&path).map_err(|e| e.to_string())
            }
        };
        match loaded {
            Ok(mut file) => {
                // A caller of an account in an organisation is of that
                // organisation (`aws:PrincipalOrgID`) unless its key says.
                if let Some(api) = &self.api {
                    for c in &mut file.credentials {
                        let p = &mut c.principal;
                        if p.org_id.is_none() {
                            p.org_id = p
                                .account()
                                .and_then(|a| api.settings.org(a))
                                .map(str::to_owned);
                        }
                    }
                }
                let store = latticed_proxy::authz::Principals::from_file(&file);
                tracing::info!(%source, credentials = store.len(), "data-path credentials loaded");
                self.dp.principals.store(Arc::new(store));
            }
            Err(e) => tracing::error!("{e}; keeping the current data-path credentials"),
        }
    }
    /// Rereads `STATE_DIR/accounts.json` when it changed (or when `force`):
    /// the API then takes exactly the default account's keys and the
    /// file's. An invalid file is logged and the current keys kept.
    pub(super) fn reload_accounts(&mut self, force: bool) {
        let path = crate::accounts::path(&self.paths.state_dir);
        let Some(api) = self.api.as_mut() else {
            return;
        };
        // In cluster mode the document in etcd stands in for the file.
        let loaded = match &api.backend {
            Backend::Cluster(c) => {
                if !force {
                    return;
                }
                match &c.accounts {
                    Some(text) => crate::accounts::parse(text, "accounts in etcd"),
                    None => Ok(crate::accounts::File::default()),
                }
            }
            Backend::Local(_) => {
                let seen = Stamp::of(&path);
                if !force && seen == api.accounts_seen {
                    return;
                }
                api.accounts_seen = seen;
                crate::accounts::load(&path)
            }
        };
        let file = match loaded {
            Ok(f) => f,
            Err(e) => {
                tracing::error!("{e}; keeping the current accounts");
                return;
            }
        };
        let mut keys = api.own_keys.clone();
        for (id, account) in &file.accounts {
            for (key, secret) in &account.admin_keys {
                let k = control::api::server::ApiKey {
                    secret: secret.clone(),
                    account: id.clone(),
                };
                keys.entry(key.clone()).or_insert(k);
            }
        }
        if let Ok(mut creds) = api.creds.write() {
            *creds = keys;
        }
        let orgs = file
            .accounts
            .iter()
            .filter_map(|(id, a)| Some((id.clone(), a.organization_id.clone()?)));
        let own = api
            .own_org
            .iter()
            .map(|o| (api.settings.naming.account.clone(), o.clone()));
        api.settings.orgs = orgs.chain(own).collect();
        tracing::info!(path = %path.display(), accounts = file.accounts.len() + 1, "API accounts loaded");
        // Callers' organisations follow their accounts'.
        self.reload_principals(true);
    }
    /// Gives the API the inventory's VPC owners (in cluster mode, every
    /// node's, each for the VPCs it hosts).
    pub(super) fn inventory_to_api(&mut self) {
        if self.cluster_revision().is_some() {
            self.publish_namespaces();
            self.claims_to_api();
            return;
        }
        if let Some(api) = self.api.as_mut() {
            api.settings
                .vpc_owners
                .clone_from(&self.compiler.inventory.vpcs);
        }
    }
    /// Rereads the inventory when it changed (or when `force`): targets
    /// it places and security groups apply at once. An invalid file is
    /// logged and the current inventory kept.
    pub(super) fn reload_inventory(&mut self, force: bool) {
        let seen = Stamp::of(&self.paths.inventory);
        if !force && seen == self.inventory_seen {
            return;
        }
        self.inventory_seen = seen;
        match Inventory::load(&self.paths.inventory) {
            Ok(inv) if inv != self.compiler.inventory => {
                self.compiler.inventory = inv;
                self.inventory_to_api();
                let plan = self.plan.clone();
                self.publish_full(&plan);
                if let Err(e) = self.steer(&plan) {
                    tracing::error!(error = %e, "applying the inventory's security groups");
                }
                tracing::info!(path = %self.paths.inventory.display(), "inventory reloaded");
            }
            Ok(_) => {}
            Err(e) => tracing::error!("{e}; keeping the current inventory"),
        }
    }
    /// Rereads the configuration file; keeps the current one if the new one
    /// is invalid or cannot be applied.
    pub async fn reload(&mut self) {
        self.reload_principals(true);
        self.reload_accounts(true);
        self.reload_inventory(true);
        let Some(path) = self.paths.config.clone() else {
            tracing::info!("no configuration file to reload");
            return;
        };
        let (config, plan) = match control::load(&path, &self.paths.netns_dir) {
            Ok(loaded) => loaded,
            Err(e) => {
                tracing::error!("{e}; keeping the current configuration");
                return;
            }
        };
        match self.apply(plan).await {
            Ok(()) => {
                self.desired = config;
                tracing::info!(path = %path.display(), "configuration reloaded");
            }
            Err(e) => {
                tracing::error!(error = %e, "applying the new configuration failed; keeping the current one")
            }
        }
    }
    /// Notices namespaces whose name was removed (`ip netns del`) or now
    /// names another namespace, and namespaces the configuration names that
    /// appeared; re-applies the configuration over what exists.
    pub async fn check_namespaces(&mut self) {
        self.reload_principals(false);
        self.reload_accounts(false);
        self.reload_inventory(false);
        let gone: Vec<String> = self
            .managed
            .iter()
            .filter(|(_, m)| !m.netns.still_named())
            .map(|(n, _)| n.clone())
            .collect();
        for name in &gone {
            tracing::error!(namespace = %name, "network namespace disappeared; its services and targets are unavailable until it returns");
            // Release it without touching its routes: nobody can name it any
            // more and it goes away with its last process, while requests in
            // flight on pooled connections still need the route to get their
            // answers back.
            self.detach_client(name);
            self.managed.remove(name);
        }
        // Re-planning everything costs in proportion to the configuration:
        // do it only when a namespace went, or one the configuration names
        // (but that was missing) is there now.
        let appeared = self
            .referenced_namespaces()
            .iter()
            .any(|n| !self.managed.contains_key(n) && self.paths.netns_dir.join(n).exists());
        if gone.is_empty() && !appeared {
            return;
        }
        let plan = match self.current_plan() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "the configuration no longer plans");
                return;
            }
        };
        let returned = plan
            .namespaces()
            .into_iter()
            .any(|n| !self.plan.namespaces().contains(n));
        match self.apply(plan).await {
            Ok(()) if returned => tracing::info!("namespaces returned; configuration re-applied"),
            Ok(()) => {}
            Err(e) => tracing::warn!(error = %e, "re-applying after namespaces changed"),
        }
    }
}

/// What tells a rewritten file from the one last read: its modification
/// time, size and inode (a file replaced by rename within one tick of the
/// clock still differs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Stamp(std::time::SystemTime, u64, u64);

impl Stamp {
    /// `path`'s stamp; `None` if it does not exist.
    pub(super) fn of(path: &std::path::Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(Self(m.modified().ok()?, m.len(), m.ino()))
    }
}
