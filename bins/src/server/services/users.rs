//! Users apart from HTTP: generated ids `u-xxxxx`, plain-ASCII usernames unique regardless of case,
//! write-only passwords (argon2, within the server's hashing limit), server-owned principal ids,
//! default global roles, who may change a user ([`escalation`]), and changing one's own password.

use std::sync::Arc;

use rancher_auth::password::{self, PasswordError};
use rancher_core::model::{GlobalRole, GlobalRoleBinding, GlobalRoleBindingSpec, User};
use rancher_core::store::{Api, Store, StoreError};

use super::access::escalation::{self, EscalationError};
use crate::server::auth::Caller;
use crate::server::hashing::{self, HashError};

/// The longest local username.
const MAX_USERNAME: usize = 128;

/// Why a user was not created or changed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UserError {
    /// The request named the user's id; ids are the server's.
    #[error("user ids are made by the server (u-xxxxx): leave metadata.name and generateName out")]
    IdChosen,
    /// No username.
    #[error("a username is required")]
    UsernameMissing,
    /// The username has characters, a length or a start that is not allowed.
    #[error(
        "{username:?} is not a valid username: 1 to {MAX_USERNAME} ASCII letters, digits, '.', '_', '-' \
         or '@', starting with a letter or digit"
    )]
    UsernameInvalid {
        /// The username asked for.
        username: String,
    },
    /// Another user has the username, or one that differs only in case.
    #[error("username {username:?} is taken{}", similar_suffix(.existing))]
    UsernameTaken {
        /// The username asked for.
        username: String,
        /// The other user's username when it differs in case only.
        existing: Option<String>,
    },
    /// A new user needs a password.
    #[error("a password is required")]
    PasswordMissing,
    /// The new password is too weak.
    #[error("{source}")]
    WeakPassword {
        /// The field that held it (`spec.password`, `newPassword`).
        field: &'static str,
        /// Why it is refused.
        #[source]
        source: PasswordError,
    },
    /// Hashing or checking a password was refused for load, or failed.
    #[error(transparent)]
    Hashing(#[from] HashError),
    /// One's own password is changed only with the current one (`?action=changepassword`).
    #[error(
        "users \"{user}\" is forbidden: your own password is changed with POST \
         /v3/users?action=changepassword and the current password"
    )]
    OwnPasswordByUpdate {
        /// The caller's user id.
        user: String,
    },
    /// The user logs in through an identity provider and has no local password.
    #[error("user \"{user}\" has no local password: it logs in through its identity provider")]
    NoLocalPassword {
        /// The user's id.
        user: String,
    },
    /// The current password given to change it is wrong.
    #[error("the current password is not correct")]
    WrongCurrentPassword,
    /// The caller may not give the user these roles, or change this user.
    #[error(transparent)]
    Escalation(Box<EscalationError>),
    /// Reading the users (to find a username, to check one is free) failed.
    #[error("reading the users: {0}")]
    ListUsers(#[source] StoreError),
    /// Reading or writing the user failed (a concurrent change is a `Conflict`).
    #[error("user {user}: {source}")]
    Store {
        /// The user's id.
        user: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// Binding the user to a global role failed.
    #[error("binding user {user} to global role {role}: {source}")]
    BindRole {
        /// The user's id.
        user: String,
        /// The global role.
        role: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
}

impl From<EscalationError> for UserError {
    fn from(e: EscalationError) -> Self {
        UserError::Escalation(Box::new(e))
    }
}

fn similar_suffix(existing: &Option<String>) -> String {
    existing.as_ref().map(|e| format!(": it differs from {e:?} only in case")).unwrap_or_default()
}

type Result<T, E = UserError> = std::result::Result<T, E>;

/// Hashes a new password after the strength check, within the process-wide limit on password hashing
/// (argon2 is slow on purpose). `field` names where it came from, for the error.
pub(crate) async fn hash_new_password(field: &'static str, pw: String) -> Result<String> {
    password::check_strength(&pw).map_err(|source| UserError::WeakPassword { field, source })?;
    Ok(hashing::hash(pw).await?)
}

/// The user with this login name, if any.
pub(crate) async fn find_by_username(
    store: &Arc<dyn Store>,
    username: &str,
) -> std::result::Result<Option<User>, StoreError> {
    Ok(Api::<User>::all(store.clone()).list().await?.into_iter().find(|u| u.spec.username == username))
}

/// Local usernames are typed at `rancherctl login` and shown next to each other in lists, so they are
/// plain ASCII: letters, digits and `.`, `_`, `-`, `@` (e-mail-like names work), starting with a letter
/// or digit (never an option-like `-x`). No other script can make a look-alike of another user's name
/// (`аdmin` with a Cyrillic `а`), and no invisible or confusable character gets in.
pub(crate) fn check_username(username: &str) -> Result<()> {
    if username.is_empty() {
        return Err(UserError::UsernameMissing);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@');
    if username.len() > MAX_USERNAME
        || !username.chars().all(allowed)
        || !username.starts_with(|c: char| c.is_ascii_alphanumeric())
    {
        return Err(UserError::UsernameInvalid { username: username.to_owned() });
    }
    Ok(())
}

/// Refuses `username` when another user (not `except`) has it, compared without regard to case, so
/// `Admin` is not a second `admin`.
async fn check_username_free(store: &Arc<dyn Store>, username: &str, except: Option<&str>) -> Result<()> {
    let users = Api::<User>::all(store.clone()).list().await.map_err(UserError::ListUsers)?;
    match users
        .iter()
        .find(|u| u.spec.username.eq_ignore_ascii_case(username) && Some(u.metadata.name.as_str()) != except)
    {
        Some(u) => Err(UserError::UsernameTaken {
            username: username.to_owned(),
            existing: (u.spec.username != username).then(|| u.spec.username.clone()),
        }),
        None => Ok(()),
    }
}

/// The deterministic name of the binding of `user` to `role`, so bootstrap and retries stay idempotent.
pub(crate) fn binding_name(user: &str, role: &str) -> String {
    format!("{user}-{role}")
}

/// Binds `user` to `role` unless bound already.
pub(crate) async fn bind_global_role(
    store: &Arc<dyn Store>,
    user: &str,
    role: &str,
) -> std::result::Result<(), StoreError> {
    let grb = GlobalRoleBinding::new(
        &binding_name(user, role),
        GlobalRoleBindingSpec { user_name: user.into(), global_role_name: role.into(), ..Default::default() },
    );
    match Api::<GlobalRoleBinding>::all(store.clone()).create(&grb).await {
        Ok(_) | Err(StoreError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Binds a new user to every global role marked `newUserDefault`.
pub(crate) async fn bind_default_roles(store: &Arc<dyn Store>, user: &str) -> Result<()> {
    let roles = Api::<GlobalRole>::all(store.clone()).list().await.map_err(|source| UserError::BindRole {
        user: user.into(),
        role: "(default roles)".into(),
        source,
    })?;
    for role in roles.iter().filter(|r| r.spec.new_user_default) {
        let role = &role.metadata.name;
        bind_global_role(store, user, role).await.map_err(|source| UserError::BindRole {
            user: user.into(),
            role: role.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Makes `user` ready to be stored as a new user created by `caller`: a generated id, a checked free
/// username, the creator allowed to hand out the default roles, the password hashed, the principal
/// id the server's.
pub(crate) async fn prepare_new(store: &Arc<dyn Store>, caller: &Caller, user: &mut User) -> Result<()> {
    // The id is the server's: the user's principal id is made from it, and a chosen one could take
    // the id a provider user gets on first login (`u-<hash of the principal>`).
    if !user.metadata.name.is_empty() || user.metadata.generate_name.as_deref().is_some_and(|g| !g.is_empty())
    {
        return Err(UserError::IdChosen);
    }
    user.metadata.name = format!("u-{}", rancher_auth::token::random_id(5));
    user.metadata.generate_name = None;
    check_username(&user.spec.username)?;
    check_username_free(store, &user.spec.username, None).await?;
    if user.spec.password.is_empty() {
        return Err(UserError::PasswordMissing);
    }
    escalation::check_new_user_roles(store, caller).await?;
    user.spec.password = hash_new_password("spec.password", std::mem::take(&mut user.spec.password)).await?;
    // Principal ids are the server's: bindings and the proxy match on them, so a client naming
    // another user's principal would act as that user.
    user.spec.principal_ids = vec![format!("local://{}", user.metadata.name)];
    if user.spec.display_name.is_empty() {
        user.spec.display_name = user.spec.username.clone();
    }
    Ok(())
}

/// Narrows an update of `old` to what may change: the principal ids never, the username to a free
/// valid one, and the password only for someone else — one's own needs the current password
/// ([`change_own_password`]), so a stolen session cannot lock its owner out. Whether `caller` may
/// change `old` at all is [`check_manage`].
pub(crate) async fn prepare_change(
    store: &Arc<dyn Store>,
    caller: &Caller,
    new: &mut User,
    old: &User,
) -> Result<()> {
    if new.spec.username != old.spec.username {
        check_username(&new.spec.username)?;
        check_username_free(store, &new.spec.username, Some(&old.metadata.name)).await?;
    }
    new.spec.principal_ids = old.spec.principal_ids.clone();
    new.spec.password = if new.spec.password.is_empty() {
        old.spec.password.clone()
    } else if old.metadata.name == caller.user_id() {
        return Err(UserError::OwnPasswordByUpdate { user: old.metadata.name.clone() });
    } else {
        hash_new_password("spec.password", std::mem::take(&mut new.spec.password)).await?
    };
    Ok(())
}

/// Whether `caller` may update, disable, rename, delete or reset the password of `target`.
pub(crate) async fn check_manage(store: &Arc<dyn Store>, caller: &Caller, target: &User) -> Result<()> {
    Ok(escalation::check_manage_user(store, caller, target).await?)
}

/// The user `user_id`'s own password, given the current one (as Rancher's `changepassword` action).
/// The check runs through the same bounded pool as logins, so a stolen session cannot turn this into
/// a CPU flood; the write is a compare-and-swap on the version read, so a concurrent change is a
/// conflict, never overwritten.
pub(crate) async fn change_own_password(
    store: &Arc<dyn Store>,
    user_id: &str,
    current: String,
    new: String,
) -> Result<()> {
    password::check_strength(&new)
        .map_err(|source| UserError::WeakPassword { field: "newPassword", source })?;
    let users: Api<User> = Api::all(store.clone());
    let store_error = |source| UserError::Store { user: user_id.to_owned(), source };
    let mut user = users.get(user_id).await.map_err(store_error)?;
    if user.spec.password.is_empty() {
        return Err(UserError::NoLocalPassword { user: user_id.to_owned() });
    }
    if !hashing::verify(current, Some(user.spec.password.clone())).await? {
        return Err(UserError::WrongCurrentPassword);
    }
    user.spec.password = hash_new_password("newPassword", new).await?;
    user.spec.must_change_password = false;
    users.update(&user).await.map_err(store_error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_plain_ascii_and_start_with_a_letter_or_digit() {
        for ok in ["alice", "bob.smith@example.com", "a_b-c", "7up"] {
            check_username(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(matches!(check_username(""), Err(UserError::UsernameMissing)));
        for bad in ["-rf", "аdmin", "al ice", "tab\t", &"x".repeat(129)] {
            assert!(matches!(check_username(bad), Err(UserError::UsernameInvalid { .. })), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_username_differing_only_in_case_is_taken() {
        let store: Arc<dyn Store> = Arc::new(rancher_core::store::MemoryStore::new());
        let mut admin = User::new("u-admin", Default::default());
        admin.spec.username = "admin".into();
        Api::<User>::all(store.clone()).create(&admin).await.unwrap();
        let err = check_username_free(&store, "Admin", None).await.unwrap_err();
        assert_eq!(err.to_string(), "username \"Admin\" is taken: it differs from \"admin\" only in case");
        let err = check_username_free(&store, "admin", None).await.unwrap_err();
        assert_eq!(err.to_string(), "username \"admin\" is taken");
        check_username_free(&store, "ADMIN", Some("u-admin")).await.expect("renaming oneself in case");
    }
}
