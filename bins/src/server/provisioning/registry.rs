//! The provisioners a server knows, by driver name: `imported` built in, the rest plugged in through
//! [`ServerBuilder::provisioner`](crate::server::ServerBuilder::provisioner).

use std::collections::BTreeMap;
use std::sync::Arc;

use rancher_provision::Provisioner;

/// Provisioners by driver name; at most one per name.
#[derive(Clone, Default)]
pub(crate) struct Provisioners {
    /// Shared: the server's state is cloned for every request it handles.
    by_driver: Arc<BTreeMap<String, Arc<dyn Provisioner>>>,
}

impl std::fmt::Debug for Provisioners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_driver.keys()).finish()
    }
}

/// Two provisioners claimed one driver name, or one claimed none.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A second provisioner for a driver.
    #[error("two provisioners are registered for the driver {0:?}")]
    Duplicate(String),
    /// A provisioner whose `driver()` is empty.
    #[error("a provisioner's driver name is empty")]
    EmptyName,
}

impl Provisioners {
    /// A registry of `provisioners`, in order.
    ///
    /// # Errors
    /// [`RegistryError`] on a driver name used twice, or an empty one.
    pub(crate) fn new(
        provisioners: impl IntoIterator<Item = Arc<dyn Provisioner>>,
    ) -> Result<Self, RegistryError> {
        let mut by_driver = BTreeMap::new();
        for p in provisioners {
            let driver = p.driver().to_owned();
            if driver.is_empty() {
                return Err(RegistryError::EmptyName);
            }
            if by_driver.insert(driver.clone(), p).is_some() {
                return Err(RegistryError::Duplicate(driver));
            }
        }
        Ok(Provisioners { by_driver: Arc::new(by_driver) })
    }

    /// The provisioner of `driver`.
    pub(crate) fn get(&self, driver: &str) -> Option<&Arc<dyn Provisioner>> {
        self.by_driver.get(driver)
    }

    /// Every provisioner, by driver name, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &Arc<dyn Provisioner>)> {
        self.by_driver.iter().map(|(d, p)| (d.as_str(), p))
    }

    /// The registered driver names, comma-separated, for messages.
    pub(crate) fn names(&self) -> String {
        self.by_driver.keys().map(String::as_str).collect::<Vec<_>>().join(", ")
    }

    /// The message for a driver nobody registered.
    pub(crate) fn unknown(&self, driver: &str) -> String {
        format!("no provisioner is registered for the driver {driver:?} (registered: {})", self.names())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::provisioning::imported::Imported;

    #[test]
    fn one_provisioner_per_driver() {
        let reg = Provisioners::new([Arc::new(Imported) as Arc<dyn Provisioner>]).unwrap();
        assert!(reg.get("imported").is_some());
        assert_eq!(
            reg.unknown("rke"),
            "no provisioner is registered for the driver \"rke\" (registered: imported)"
        );
        let twice = Provisioners::new([Arc::new(Imported) as Arc<dyn Provisioner>, Arc::new(Imported)]);
        assert_eq!(
            twice.unwrap_err().to_string(),
            "two provisioners are registered for the driver \"imported\""
        );
    }
}
