//! The stand-in's service account and token endpoint: an RSA key pair of its own, the key JSON it
//! hands the test, and the JWT bearer grant (RFC 7523) as Google documents it
//! (<https://developers.google.com/identity/protocols/oauth2/service-account#httprest>): the
//! assertion's RS256 signature, `iss`, `aud` (the token URI), `scope`, and `iat`/`exp` (at most an
//! hour apart, not expired) are checked; errors are `{"error": "invalid_grant", …}` with 400.

use std::collections::HashMap;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

/// The scope the client must ask for.
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// A service account: its email, key id and key pair.
pub(super) struct Account {
    pub(super) email: String,
    pub(super) key_id: String,
    key: KeyPair,
}

impl Account {
    pub(super) fn generate(email: &str) -> Account {
        let key = KeyPair::generate(KeySize::Rsa2048).expect("RSA key");
        Account { email: email.to_owned(), key_id: random_hex(20), key }
    }

    /// The key JSON Google hands out for this account.
    pub(super) fn key_json(&self, project_id: &str, token_uri: &str) -> String {
        let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&self.key).expect("PKCS#8");
        let b64 = STANDARD.encode(der.as_ref());
        let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.push_str(std::str::from_utf8(line).expect("base64"));
            pem.push('\n');
        }
        pem.push_str("-----END PRIVATE KEY-----\n");
        serde_json::json!({
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.email,
            "client_id": "100000000000000000001",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        })
        .to_string()
    }

    /// Checks a bearer-grant request; `Err` is the OAuth error code and description.
    pub(super) fn check_grant(
        &self,
        form: &HashMap<String, String>,
        token_uri: &str,
        now: i64,
    ) -> Result<(), (&'static str, String)> {
        let grant = form.get("grant_type").map(String::as_str).unwrap_or_default();
        if grant != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
            return Err(("unsupported_grant_type", format!("Invalid grant_type: {grant}")));
        }
        let jwt = form.get("assertion").map(String::as_str).unwrap_or_default();
        let invalid = |why: &str| ("invalid_grant", why.to_owned());
        let parts: Vec<&str> = jwt.split('.').collect();
        let [header, claims, signature] = parts.as_slice() else {
            return Err(invalid("Invalid JWT: not three parts"));
        };
        let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).ok();
        let json = |s: &str| decode(s).and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok());
        let header = json(header).ok_or_else(|| invalid("Invalid JWT: the header is not base64url JSON"))?;
        if header["alg"] != "RS256" {
            return Err(invalid("Invalid JWT: alg must be RS256"));
        }
        let claims = json(claims).ok_or_else(|| invalid("Invalid JWT: the claims are not base64url JSON"))?;
        if claims["iss"] != self.email.as_str() {
            return Err(invalid("Invalid email or User ID"));
        }
        let signature = decode(signature).ok_or_else(|| invalid("Invalid JWT Signature."))?;
        let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, self.key.public_key().as_ref())
            .verify(signed.as_bytes(), &signature)
            .map_err(|_| invalid("Invalid JWT Signature."))?;
        if claims["aud"] != token_uri {
            return Err(invalid("Invalid JWT: the audience is not the token URI"));
        }
        let scopes = claims["scope"].as_str().unwrap_or_default();
        if !scopes.split(' ').any(|s| s == CLOUD_PLATFORM) {
            return Err((
                "invalid_scope",
                format!("Invalid OAuth scope or ID token audience provided: {scopes:?}"),
            ));
        }
        let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
            return Err(invalid("Invalid JWT: iat and exp are required"));
        };
        if exp <= now || iat > now + 300 || exp - iat > 3600 || exp <= iat {
            return Err(invalid(
                "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. \
                 Check your iat and exp values in the JWT claim.",
            ));
        }
        Ok(())
    }
}

/// `n` random bytes as hex.
pub(super) fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut bytes).expect("random bytes");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::RSA_PKCS1_SHA256;
    use serde_json::{Value, json};

    use super::*;

    const URI: &str = "https://127.0.0.1:1/token";

    fn grant(signer: &Account, claims: &Value) -> HashMap<String, String> {
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!("{}.{}", enc(&json!({"alg": "RS256", "typ": "JWT"})), enc(claims));
        let mut sig = vec![0; signer.key.public_modulus_len()];
        signer.key.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut sig).unwrap();
        HashMap::from([
            ("grant_type".to_owned(), "urn:ietf:params:oauth:grant-type:jwt-bearer".to_owned()),
            ("assertion".to_owned(), format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))),
        ])
    }

    #[test]
    fn the_bearer_grant_is_checked_as_google_documents() {
        let account = Account::generate("sa@p.iam.gserviceaccount.com");
        let now = 1_700_000_000;
        let claims = |aud: &str, iat: i64, exp: i64| json!({"iss": account.email, "scope": CLOUD_PLATFORM, "aud": aud, "iat": iat, "exp": exp});
        let check = |form: &HashMap<String, String>| {
            account.check_grant(form, URI, now).map_err(|(code, why)| format!("{code}: {why}"))
        };
        assert_eq!(check(&grant(&account, &claims(URI, now, now + 3600))), Ok(()));

        let wrong_aud = check(&grant(&account, &claims("https://elsewhere/token", now, now + 3600)));
        assert!(wrong_aud.unwrap_err().contains("audience"));
        let expired = check(&grant(&account, &claims(URI, now - 4000, now - 400)));
        assert!(expired.unwrap_err().starts_with("invalid_grant: Invalid JWT: Token must be a short-lived"));
        let too_long = check(&grant(&account, &claims(URI, now, now + 7200)));
        assert!(too_long.is_err());
        let stranger = Account::generate(&account.email);
        let forged = check(&grant(&stranger, &claims(URI, now, now + 3600)));
        assert_eq!(forged.unwrap_err(), "invalid_grant: Invalid JWT Signature.");
        let mut form = grant(&account, &claims(URI, now, now + 3600));
        form.insert("grant_type".into(), "client_credentials".into());
        assert!(check(&form).unwrap_err().starts_with("unsupported_grant_type"));
        let mut no_scope = claims(URI, now, now + 3600);
        no_scope["scope"] = json!("https://www.googleapis.com/auth/devstorage.read_only");
        assert!(check(&grant(&account, &no_scope)).unwrap_err().starts_with("invalid_scope"));
    }
}
