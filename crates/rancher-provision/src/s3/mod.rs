//! S3-compatible object storage for etcd snapshots: a small client (put, get, list, delete, head
//! bucket) whose requests are signed with AWS Signature Version 4 here, addressed path-style so
//! AWS, MinIO and moto all serve them. Configured like Rancher's `s3BackupConfig`.
//!
//! ```no_run
//! # async fn example() -> Result<(), rancher_provision::s3::S3Error> {
//! use rancher_provision::s3::{S3Client, S3Config};
//!
//! let s3 = S3Client::new(&S3Config {
//!     endpoint: "minio.example:9000".into(), // HTTPS unless `http://` is written out
//!     bucket_name: "etcd-snapshots".into(),
//!     folder: "prod".into(),
//!     access_key: "AKIDEXAMPLE".into(),
//!     secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
//!     ..Default::default()
//! })?;
//! s3.head_bucket().await?;
//! let put = s3.put_object("snap-1.db", std::path::Path::new("/opt/rke/etcd-snapshots/snap-1.db")).await?;
//! for o in s3.list_objects_v2("snap-").await? {
//!     println!("{} {} bytes", o.name, o.size);
//! }
//! let mut file = tokio::fs::File::create("/tmp/snap-1.db").await.expect("create");
//! assert_eq!(s3.get_object("snap-1.db", &mut file).await?, put.size);
//! s3.delete_object("snap-1.db").await?;
//! # Ok(()) }
//! ```

mod client;
mod config;
mod error;
mod xml;

pub use client::{ObjectInfo, PutObjectOutput, S3Client};
pub use config::{
    DEFAULT_REGION, S3Config, S3ConfigError, check_bucket_name, check_folder, check_region, parse_endpoint,
};
pub use error::{Result, S3Error, S3Op};

#[cfg(test)]
mod tests {
    use super::client::parse_list_page;

    const PAGE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>snapshots</Name><Prefix>prod/</Prefix><KeyCount>2</KeyCount><MaxKeys>2</MaxKeys>
  <IsTruncated>true</IsTruncated>
  <Contents>
    <Key>prod/c1-2026-12-03T10:00:00Z.db</Key>
    <LastModified>2026-12-03T10:00:05.000Z</LastModified>
    <ETag>&quot;d41d8cd98f00b204e9800998ecf8427e&quot;</ETag>
    <Size>5242880</Size><StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents><Key>prod/c1 &amp; more.db</Key><Size>7</Size></Contents>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
</ListBucketResult>"#;

    #[test]
    fn a_list_page_gives_keys_names_sizes_and_the_next_token() {
        let page = parse_list_page(PAGE, "prod").unwrap();
        assert_eq!(page.next.as_deref(), Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM="));
        assert_eq!(page.objects.len(), 2);
        let a = &page.objects[0];
        assert_eq!(a.key, "prod/c1-2026-12-03T10:00:00Z.db");
        assert_eq!(a.name, "c1-2026-12-03T10:00:00Z.db");
        assert_eq!((a.size, a.etag.as_str()), (5_242_880, "d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(a.last_modified, "2026-12-03T10:00:05.000Z");
        assert_eq!((page.objects[1].name.as_str(), page.objects[1].size), ("c1 & more.db", 7));
    }

    #[test]
    fn the_last_page_has_no_token_and_an_empty_one_no_objects() {
        let last = PAGE.replace("<IsTruncated>true", "<IsTruncated>false");
        assert!(parse_list_page(&last, "prod").unwrap().next.is_none());
        let empty = "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        let page = parse_list_page(empty, "").unwrap();
        assert!(page.objects.is_empty() && page.next.is_none());
    }

    #[test]
    fn a_page_that_cannot_be_followed_is_refused() {
        let no_token = PAGE.replace("NextContinuationToken", "Other");
        assert!(parse_list_page(&no_token, "prod").unwrap_err().contains("continuation token"));
        let bad_size = PAGE.replace("<Size>7</Size>", "<Size>seven</Size>");
        assert!(parse_list_page(&bad_size, "prod").unwrap_err().contains("seven"));
        let no_key = PAGE.replace("<Key>prod/c1 &amp; more.db</Key>", "");
        assert!(parse_list_page(&no_key, "prod").unwrap_err().contains("without <Key>"));
        let error = "<Error><Code>NoSuchBucket</Code></Error>";
        assert!(parse_list_page(error, "").unwrap_err().contains("<Error>"));
        assert!(parse_list_page("<ListBucketResult>", "").is_err());
    }
}
