//! Which incarnation of a cluster or project an object belongs to. Names are reused (delete `edge`,
//! create `edge` again), so an object made for a cluster or project records its owner's uid in an
//! annotation when it is made, and every reader checks it against the owner that exists now: an
//! object of an earlier owner of the same name grants, registers and authenticates nothing.

use rancher_core::ObjectMeta;

/// On registration tokens, cluster role template bindings, projects and cluster-scoped tokens: the
/// uid of the cluster they were made for.
pub(crate) const CLUSTER_UID_ANNOTATION: &str = "management.cattle.io/cluster-uid";
/// On project role template bindings: the uid of the project they were made for.
pub(crate) const PROJECT_UID_ANNOTATION: &str = "management.cattle.io/project-uid";

/// Records `owner` as the owner of `meta` under `annotation` (overwriting whatever a client sent).
pub(crate) fn stamp(meta: &mut ObjectMeta, annotation: &str, owner: &ObjectMeta) {
    meta.annotations.insert(annotation.to_owned(), owner.uid.clone());
}

/// Keeps the stored owner record across an update: a client can neither move an object to another
/// incarnation of its owner nor drop the record.
pub(crate) fn preserve(new: &mut ObjectMeta, old: &ObjectMeta, annotation: &str) {
    match old.annotations.get(annotation) {
        Some(uid) => new.annotations.insert(annotation.to_owned(), uid.clone()),
        None => new.annotations.remove(annotation),
    };
}

/// Whether `dependent` belongs to `owner` as it exists now (not to an earlier object of that name).
///
/// With the annotation, the uids must match. Objects made before owners were recorded have none:
/// they belong when they are not older than the owner, since an object made for an earlier owner
/// of the name was made before the current owner existed. A Terminating owner owns its dependents
/// (they are being cleaned up); callers deciding access check `deletionTimestamp` themselves.
pub(crate) fn belongs(dependent: &ObjectMeta, annotation: &str, owner: &ObjectMeta) -> bool {
    match dependent.annotations.get(annotation) {
        Some(uid) => !owner.uid.is_empty() && *uid == owner.uid,
        None => match (dependent.creation_timestamp, owner.creation_timestamp) {
            (Some(made), Some(owner_made)) => made >= owner_made,
            _ => true,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(uid: &str, made: &str) -> ObjectMeta {
        ObjectMeta {
            name: "x".into(),
            uid: uid.into(),
            creation_timestamp: Some(made.parse().unwrap()),
            ..Default::default()
        }
    }

    #[test]
    fn a_recorded_owner_must_be_the_current_one() {
        let old = meta("uid-old", "2030-01-01T00:00:00Z");
        let new = meta("uid-new", "2030-01-01T00:05:00Z");
        let mut dep = meta("d", "2030-01-01T00:10:00Z");
        stamp(&mut dep, CLUSTER_UID_ANNOTATION, &old);
        assert!(belongs(&dep, CLUSTER_UID_ANNOTATION, &old));
        assert!(!belongs(&dep, CLUSTER_UID_ANNOTATION, &new), "made later, yet for the old owner");
        assert!(!belongs(&dep, CLUSTER_UID_ANNOTATION, &ObjectMeta::default()));
    }

    #[test]
    fn unrecorded_objects_older_than_their_owner_belong_to_an_earlier_one() {
        let owner = meta("o", "2030-01-01T00:05:00Z");
        assert!(!belongs(&meta("d", "2030-01-01T00:04:59Z"), CLUSTER_UID_ANNOTATION, &owner));
        assert!(belongs(&meta("d", "2030-01-01T00:05:00Z"), CLUSTER_UID_ANNOTATION, &owner));
        assert!(belongs(&ObjectMeta::default(), CLUSTER_UID_ANNOTATION, &owner));
    }

    #[test]
    fn updates_keep_the_stored_record() {
        let owner = meta("o", "2030-01-01T00:00:00Z");
        let mut old = meta("d", "2030-01-01T00:00:00Z");
        stamp(&mut old, PROJECT_UID_ANNOTATION, &owner);
        let mut new = old.clone();
        new.annotations.insert(PROJECT_UID_ANNOTATION.into(), "forged".into());
        preserve(&mut new, &old, PROJECT_UID_ANNOTATION);
        assert_eq!(new.annotations[PROJECT_UID_ANNOTATION], "o");
        let legacy = meta("d", "2030-01-01T00:00:00Z");
        preserve(&mut new, &legacy, PROJECT_UID_ANNOTATION);
        assert!(!new.annotations.contains_key(PROJECT_UID_ANNOTATION), "a record cannot be added later");
    }
}
