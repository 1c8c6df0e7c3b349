//! JWT tokens: HS256 with the system secret or an issuer's own, RS256 and ES256 with keys in
//! the configuration or from a JWKS served on 127.0.0.1 — its cache, rotation and rate
//! limit, keys kept apart by (issuer, kid) — and every refusal, each with its reason.
//!
//! Keys are made in the test with `rsa` and `p256`, the RustCrypto crates jsonwebtoken's
//! backend already builds (one RSA key per run: it takes seconds in a debug build).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::FutureExt;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use longlink_push::token::{
    ConfigProblem, IssuerConfig, JwtAlgorithm, JwtConfig, PublicKeyConfig, Secret, TokenError,
    TokenKind, Tokens, TokensConfig, Verified, Verifier,
};
use p256::elliptic_curve::Generate;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

const SYSTEM_SECRET: &str = "system-secret-0123456789abcdef-0123456789";
const HMAC_SECRET: &[u8] = b"hmac-token-secret";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A key pair: the private half signs test tokens, the public half goes in a config or JWKS.
struct Pair {
    signing: EncodingKey,
    public_pem: String,
    alg: Algorithm,
}

impl Pair {
    fn ec() -> Pair {
        let secret = p256::SecretKey::generate();
        let private = secret.to_pkcs8_pem(LineEnding::LF).unwrap();
        Pair {
            signing: EncodingKey::from_ec_pem(private.as_bytes()).unwrap(),
            public_pem: secret
                .public_key()
                .to_public_key_pem(LineEnding::LF)
                .unwrap(),
            alg: Algorithm::ES256,
        }
    }

    /// One RSA-2048 pair for the whole run.
    fn rsa() -> &'static Pair {
        static RSA: OnceLock<Pair> = OnceLock::new();
        RSA.get_or_init(|| {
            let private = rsa::PrivateKey::generate();
            let pem = private.to_pkcs8_pem(LineEnding::LF).unwrap();
            Pair {
                signing: EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
                public_pem: private
                    .to_public_key()
                    .to_public_key_pem(LineEnding::LF)
                    .unwrap(),
                alg: Algorithm::RS256,
            }
        })
    }

    /// The public key as a JWK with `kid` (RSA `n`/`e`, EC `x`/`y`).
    fn jwk(&self, kid: &str) -> Value {
        let mut jwk = Jwk::from_encoding_key(&self.signing, self.alg).unwrap();
        jwk.common.key_id = Some(kid.to_owned());
        serde_json::to_value(jwk).unwrap()
    }

    fn sign(&self, kid: Option<&str>, claims: &Value) -> String {
        sign(self.alg, kid, claims, &self.signing)
    }
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn hs256(secret: &str, claims: &Value) -> String {
    sign(
        Algorithm::HS256,
        None,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
}

/// Claims for `u1`, valid for ten minutes, from `iss` (none if `None`).
fn claims(iss: Option<&str>) -> Value {
    let mut claims = json!({ "sub": "u1", "exp": now() + 600 });
    if let Some(iss) = iss {
        claims["iss"] = json!(iss);
    }
    claims
}

fn with(mut claims: Value, key: &str, value: Value) -> Value {
    claims[key] = value;
    claims
}

fn verifier(jwt: JwtConfig) -> Verifier {
    Verifier::new(Tokens::new(HMAC_SECRET), &TokensConfig::with_jwt(jwt)).unwrap()
}

fn system_config() -> JwtConfig {
    let mut jwt = JwtConfig::default();
    jwt.hs256_secret = Some(Secret::new(SYSTEM_SECRET));
    jwt
}

fn pinned(issuer: &str, alg: JwtAlgorithm, keys: &[(Option<&str>, &Pair)]) -> IssuerConfig {
    IssuerConfig::public_keys(
        issuer,
        [alg],
        keys.iter()
            .map(|(kid, pair)| PublicKeyConfig::new(*kid, pair.public_pem.clone())),
    )
}

/// A JWKS on 127.0.0.1 that counts its fetches and can be slowed down or rewritten.
struct JwksServer {
    url: String,
    body: Arc<parking_lot::Mutex<String>>,
    fetches: Arc<AtomicUsize>,
    delay_ms: Arc<AtomicU64>,
}

impl JwksServer {
    async fn start(keys: Vec<Value>) -> JwksServer {
        let body = Arc::new(parking_lot::Mutex::new(String::new()));
        let fetches = Arc::new(AtomicUsize::new(0));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let app = {
            let (body, fetches, delay_ms) = (body.clone(), fetches.clone(), delay_ms.clone());
            axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let (body, fetches, delay_ms) =
                        (body.clone(), fetches.clone(), delay_ms.clone());
                    async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        let delay = delay_ms.load(Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let body = body.lock().clone();
                        ([(http::header::CONTENT_TYPE, "application/json")], body)
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().unwrap()
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let server = JwksServer {
            url,
            body,
            fetches,
            delay_ms,
        };
        server.set(keys);
        server
    }

    fn set(&self, keys: Vec<Value>) {
        *self.body.lock() = json!({ "keys": keys }).to_string();
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

fn jwks_config(issuer: &str, algs: &[JwtAlgorithm], server: &JwksServer) -> JwtConfig {
    let mut jwt = JwtConfig::default();
    jwt.issuers.push(IssuerConfig::jwks(
        issuer,
        algs.iter().copied(),
        server.url.clone(),
    ));
    jwt
}

const ISS: &str = "https://auth.example/";

// ---------------------------------------------------------------------------------------
// Accepted

#[tokio::test]
async fn hs256_with_the_system_secret_is_accepted() {
    let v = verifier(system_config());
    let claims = with(
        with(claims(None), "apps", json!(["demo", "shop"])),
        "device",
        json!("phone"),
    );
    let got = v
        .verify(&hs256(SYSTEM_SECRET, &claims), "u1", "phone")
        .await
        .unwrap();
    assert_eq!(got.uid, "u1");
    assert_eq!(got.expires_at, claims["exp"].as_u64().unwrap());
    assert_eq!(got.apps, Some(vec!["demo".to_owned(), "shop".to_owned()]));
    assert_eq!(got.device.as_deref(), Some("phone"));
    assert_eq!((got.kind, got.issuer.as_deref()), (TokenKind::Jwt, None));
    assert!(got.allows_app("shop") && !got.allows_app("other"));
}

#[tokio::test]
async fn hs256_with_an_issuers_own_secret_is_accepted_and_not_with_the_system_one() {
    let own = "billing-secret-0123456789abcdef-012345678";
    let mut jwt = system_config();
    jwt.issuers
        .push(IssuerConfig::hs256("billing", Secret::new(own)));
    let v = verifier(jwt);
    let got = v
        .verify(&hs256(own, &claims(Some("billing"))), "u1", "phone")
        .await
        .unwrap();
    assert_eq!(got.issuer.as_deref(), Some("billing"));
    assert_eq!(got.apps, None);
    assert_eq!(
        v.verify(
            &hs256(SYSTEM_SECRET, &claims(Some("billing"))),
            "u1",
            "phone"
        )
        .await,
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn rs256_from_a_pem_key_is_accepted() {
    let rsa = Pair::rsa();
    let mut jwt = JwtConfig::default();
    jwt.issuers
        .push(pinned(ISS, JwtAlgorithm::Rs256, &[(Some("r1"), rsa)]));
    let v = verifier(jwt);
    let token = rsa.sign(Some("r1"), &claims(Some(ISS)));
    let got = v.verify(&token, "u1", "phone").await.unwrap();
    assert_eq!(got.issuer.as_deref(), Some(ISS));
    // Without a kid, the issuer's only key.
    let token = rsa.sign(None, &claims(Some(ISS)));
    assert!(v.verify(&token, "u1", "phone").await.is_ok());
}

#[tokio::test]
async fn es256_from_a_pem_key_is_accepted() {
    let (a, b) = (Pair::ec(), Pair::ec());
    let mut jwt = JwtConfig::default();
    jwt.issuers.push(pinned(
        ISS,
        JwtAlgorithm::Es256,
        &[(Some("a"), &a), (Some("b"), &b)],
    ));
    let v = verifier(jwt);
    for (kid, pair) in [("a", &a), ("b", &b)] {
        let token = pair.sign(Some(kid), &claims(Some(ISS)));
        assert_eq!(v.verify(&token, "u1", "phone").await.unwrap().uid, "u1");
    }
    // Two keys and no kid: none is chosen.
    let token = a.sign(None, &claims(Some(ISS)));
    assert!(matches!(
        v.verify(&token, "u1", "phone").await,
        Err(TokenError::UnknownKey {
            refreshed: false,
            ..
        })
    ));
}

#[tokio::test]
async fn rs256_and_es256_from_a_jwks_are_accepted_with_one_fetch() {
    let (rsa, ec) = (Pair::rsa(), Pair::ec());
    let server = JwksServer::start(vec![rsa.jwk("r1"), ec.jwk("e1")]).await;
    let v = verifier(jwks_config(
        ISS,
        &[JwtAlgorithm::Rs256, JwtAlgorithm::Es256],
        &server,
    ));
    for _ in 0..3 {
        let rs = rsa.sign(Some("r1"), &claims(Some(ISS)));
        let es = ec.sign(Some("e1"), &claims(Some(ISS)));
        assert!(v.verify(&rs, "u1", "phone").await.is_ok());
        assert!(v.verify(&es, "u1", "phone").await.is_ok());
    }
    assert_eq!(server.fetches(), 1, "the key set is cached");
}

#[tokio::test]
async fn a_jwks_over_https_is_fetched_trusting_jwks_ca_and_refused_from_an_unknown_ca() {
    let dir = tempfile::tempdir().unwrap();
    let made = longlink_push::tls::self_signed(dir.path(), &[]).unwrap();
    let metrics = Arc::new(longlink_push::metrics::Metrics::default());
    let certs = longlink_push::tls::Certificates::load(&made.tls, Arc::clone(&metrics)).unwrap();
    let server_config = longlink_push::tls::server_config(&certs, &[b"http/1.1"]).unwrap();
    let ec = Pair::ec();
    let body = json!({ "keys": [ec.jwk("e1")] }).to_string();
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let body = body.clone();
            async move { ([(http::header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "https://localhost:{}/.well-known/jwks.json",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(longlink_push::tls::https::serve(
        listener,
        app,
        Some(server_config),
        metrics,
        Default::default(),
    ));
    let config = |ca: &std::path::Path| {
        let mut jwt = JwtConfig::default();
        jwt.issuers
            .push(IssuerConfig::jwks(ISS, [JwtAlgorithm::Es256], url.clone()));
        jwt.jwks_ca = Some(ca.to_owned());
        jwt
    };
    let token = ec.sign(Some("e1"), &claims(Some(ISS)));
    let trusted = verifier(config(&made.ca));
    assert!(trusted.verify(&token, "u1", "phone").await.is_ok());

    // Trusting another CA: the handshake fails, the keys are unavailable (retryable).
    let other = tempfile::tempdir().unwrap();
    let other_ca = longlink_push::tls::self_signed(other.path(), &[])
        .unwrap()
        .ca;
    let untrusted = verifier(config(&other_ca));
    let err = untrusted.verify(&token, "u1", "phone").await.unwrap_err();
    assert!(
        matches!(err, TokenError::KeysUnavailable { .. }) && err.is_retryable(),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------
// The JWKS cache

#[tokio::test]
async fn a_rotated_key_is_fetched_once_and_accepted_and_the_withdrawn_one_refused() {
    let (old, new) = (Pair::ec(), Pair::ec());
    let server = JwksServer::start(vec![old.jwk("2026-01")]).await;
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.jwks_refresh_interval = Duration::from_secs(1);
    let v = verifier(jwt);
    let old_token = old.sign(Some("2026-01"), &claims(Some(ISS)));
    let new_token = new.sign(Some("2026-02"), &claims(Some(ISS)));
    assert!(v.verify(&old_token, "u1", "phone").await.is_ok());

    server.set(vec![new.jwk("2026-02")]);
    // Within the interval the new kid is not fetched for.
    assert!(matches!(
        v.verify(&new_token, "u1", "phone").await,
        Err(TokenError::UnknownKey {
            refreshed: true,
            ..
        })
    ));
    assert_eq!(server.fetches(), 1);

    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(v.verify(&new_token, "u1", "phone").await.is_ok());
    assert!(v.verify(&new_token, "u1", "phone").await.is_ok());
    assert_eq!(server.fetches(), 2, "one refresh for the new kid");
    // The set was replaced: the key the issuer withdrew no longer verifies.
    assert!(matches!(
        v.verify(&old_token, "u1", "phone").await,
        Err(TokenError::UnknownKey { .. })
    ));
}

#[tokio::test]
async fn unknown_kids_share_one_fetch_per_interval() {
    let ec = Pair::ec();
    let server = JwksServer::start(vec![ec.jwk("real")]).await;
    server.delay_ms.store(200, Ordering::SeqCst);
    let v = verifier(jwks_config(ISS, &[JwtAlgorithm::Es256], &server));

    let tokens: Vec<String> = (0..20)
        .map(|i| ec.sign(Some(&format!("made-up-{i}")), &claims(Some(ISS))))
        .collect();
    let real = ec.sign(Some("real"), &claims(Some(ISS)));
    let (made_up, real) = tokio::join!(
        futures_util::future::join_all(tokens.iter().map(|t| v.verify(t, "u1", "phone"))),
        v.verify(&real, "u1", "phone")
    );
    assert!(real.is_ok());
    for result in made_up {
        assert!(matches!(
            result,
            Err(TokenError::UnknownKey {
                refreshed: true,
                ..
            })
        ));
    }
    assert_eq!(server.fetches(), 1, "concurrent lookups share one fetch");

    for t in &tokens {
        assert!(v.verify(t, "u1", "phone").await.is_err());
    }
    assert_eq!(server.fetches(), 1, "at most one fetch per interval (30 s)");
}

#[tokio::test]
async fn the_same_kid_under_two_issuers_selects_each_issuers_own_key() {
    let (a, b) = (Pair::ec(), Pair::ec());
    let server_a = JwksServer::start(vec![a.jwk("shared")]).await;
    let server_b = JwksServer::start(vec![b.jwk("shared")]).await;
    let mut jwt = jwks_config("issuer-a", &[JwtAlgorithm::Es256], &server_a);
    jwt.issuers.push(IssuerConfig::jwks(
        "issuer-b",
        [JwtAlgorithm::Es256],
        server_b.url.clone(),
    ));
    let v = verifier(jwt);

    let a_as_a = a.sign(Some("shared"), &claims(Some("issuer-a")));
    let b_as_b = b.sign(Some("shared"), &claims(Some("issuer-b")));
    assert_eq!(
        v.verify(&a_as_a, "u1", "phone")
            .await
            .unwrap()
            .issuer
            .as_deref(),
        Some("issuer-a")
    );
    assert_eq!(
        v.verify(&b_as_b, "u1", "phone")
            .await
            .unwrap()
            .issuer
            .as_deref(),
        Some("issuer-b")
    );
    // Issuer A's key, cached under kid "shared", never verifies a token that says it is
    // from B (and the other way round).
    let a_as_b = a.sign(Some("shared"), &claims(Some("issuer-b")));
    let b_as_a = b.sign(Some("shared"), &claims(Some("issuer-a")));
    assert_eq!(
        v.verify(&a_as_b, "u1", "phone").await,
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        v.verify(&b_as_a, "u1", "phone").await,
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn the_same_kid_under_two_issuers_with_pinned_keys_is_kept_apart() {
    let (a, b) = (Pair::ec(), Pair::ec());
    let mut jwt = JwtConfig::default();
    jwt.issuers
        .push(pinned("issuer-a", JwtAlgorithm::Es256, &[(Some("k"), &a)]));
    jwt.issuers
        .push(pinned("issuer-b", JwtAlgorithm::Es256, &[(Some("k"), &b)]));
    let v = verifier(jwt);
    let a_as_b = a.sign(Some("k"), &claims(Some("issuer-b")));
    assert_eq!(
        v.verify(&a_as_b, "u1", "phone").await,
        Err(TokenError::BadSignature)
    );
    let b_as_b = b.sign(Some("k"), &claims(Some("issuer-b")));
    assert!(v.verify(&b_as_b, "u1", "phone").await.is_ok());
}

#[tokio::test]
async fn an_unknown_kid_is_refused_after_one_refresh() {
    let ec = Pair::ec();
    let server = JwksServer::start(vec![ec.jwk("k1")]).await;
    let v = verifier(jwks_config(ISS, &[JwtAlgorithm::Es256], &server));
    let token = ec.sign(Some("k9"), &claims(Some(ISS)));
    let err = v.verify(&token, "u1", "phone").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "issuer \"https://auth.example/\" has no key with kid \"k9\" (after refreshing its key set)"
    );
    assert!(err.is_retryable());
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn an_old_key_set_is_fetched_again_after_its_max_age() {
    let ec = Pair::ec();
    let server = JwksServer::start(vec![ec.jwk("k1")]).await;
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.jwks_refresh_interval = Duration::from_millis(100);
    jwt.jwks_max_age = Duration::from_millis(200);
    let v = verifier(jwt);
    let token = ec.sign(Some("k1"), &claims(Some(ISS)));
    assert!(v.verify(&token, "u1", "phone").await.is_ok());
    server.set(vec![]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(matches!(
        v.verify(&token, "u1", "phone").await,
        Err(TokenError::UnknownKey { .. })
    ));
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_jwks_keeps_at_most_max_keys_per_issuer_and_skips_keys_it_cannot_use() {
    let keys: Vec<Pair> = (0..4).map(|_| Pair::ec()).collect();
    let mut jwks: Vec<Value> = vec![
        // A secret in a public key set is no secret: never used.
        json!({ "kty": "oct", "kid": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA" }),
        // An encryption key.
        with(keys[0].jwk("enc"), "use", json!("enc")),
        json!({ "kty": "nonsense" }),
    ];
    jwks.extend(
        keys.iter()
            .enumerate()
            .map(|(i, k)| k.jwk(&format!("k{i}"))),
    );
    let server = JwksServer::start(jwks).await;
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.max_keys_per_issuer = 2;
    let v = verifier(jwt);
    for (i, key) in keys.iter().enumerate() {
        let token = key.sign(Some(&format!("k{i}")), &claims(Some(ISS)));
        assert_eq!(v.verify(&token, "u1", "phone").await.is_ok(), i < 2, "k{i}");
    }
    let enc = keys[0].sign(Some("enc"), &claims(Some(ISS)));
    assert!(matches!(
        v.verify(&enc, "u1", "phone").await,
        Err(TokenError::UnknownKey { .. })
    ));
}

#[tokio::test]
async fn a_jwks_that_is_down_too_large_or_too_slow_is_unavailable_and_retryable() {
    let ec = Pair::ec();
    let token = ec.sign(Some("k1"), &claims(Some(ISS)));
    let unavailable = Err(TokenError::KeysUnavailable {
        issuer: ISS.to_owned(),
    });

    // Down: a port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/jwks", closed.local_addr().unwrap());
    drop(closed);
    let mut jwt = JwtConfig::default();
    jwt.issuers
        .push(IssuerConfig::jwks(ISS, [JwtAlgorithm::Es256], closed_url));
    let result = verifier(jwt).verify(&token, "u1", "phone").await;
    assert_eq!(result, unavailable);
    assert!(result.unwrap_err().is_retryable());

    // Too large: refused from its Content-Length.
    let server = JwksServer::start(vec![ec.jwk("k1")]).await;
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.jwks_max_bytes = 64;
    assert_eq!(
        verifier(jwt).verify(&token, "u1", "phone").await,
        unavailable
    );

    // Too slow.
    server.delay_ms.store(2_000, Ordering::SeqCst);
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.jwks_fetch_timeout = Duration::from_millis(200);
    let started = std::time::Instant::now();
    assert_eq!(
        verifier(jwt).verify(&token, "u1", "phone").await,
        unavailable
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Not a JWKS.
    server.delay_ms.store(0, Ordering::SeqCst);
    *server.body.lock() = "<html>".to_owned();
    let v = verifier(jwks_config(ISS, &[JwtAlgorithm::Es256], &server));
    assert_eq!(v.verify(&token, "u1", "phone").await, unavailable);
    // Within the interval the failed JWKS is not asked again.
    let fetches = server.fetches();
    assert_eq!(v.verify(&token, "u1", "phone").await, unavailable);
    assert_eq!(server.fetches(), fetches);
}

#[tokio::test]
async fn a_dropped_fetch_leaves_the_next_lookup_free_to_fetch() {
    let ec = Pair::ec();
    let server = JwksServer::start(vec![ec.jwk("k1")]).await;
    server.delay_ms.store(3_000, Ordering::SeqCst);
    let v = verifier(jwks_config(ISS, &[JwtAlgorithm::Es256], &server));
    let token = ec.sign(Some("k1"), &claims(Some(ISS)));
    // Dropped while its fetch is in flight: once the server has the request.
    {
        let verify = v.verify(&token, "u1", "phone");
        tokio::pin!(verify);
        while server.fetches() == 0 {
            tokio::select! {
                _ = &mut verify => panic!("the fetch should still be in flight"),
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
        }
    }
    server.delay_ms.store(0, Ordering::SeqCst);
    assert!(v.verify(&token, "u1", "phone").await.is_ok());
    assert_eq!(server.fetches(), 2);
}

// ---------------------------------------------------------------------------------------
// Refusals

#[tokio::test]
async fn alg_none_is_refused() {
    let v = verifier(system_config());
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#)),
            b64(&claims(None).to_string())
        );
        let err = v.verify(&token, "u1", "phone").await.unwrap_err();
        assert_eq!(err, TokenError::AlgNone);
        assert_eq!(
            err.to_string(),
            "unsigned jwt (alg none) refused: sign it with an algorithm configured for its issuer"
        );
    }
}

#[tokio::test]
async fn an_hs256_token_made_with_a_public_key_as_its_secret_is_refused() {
    let (rsa, ec) = (Pair::rsa(), Pair::ec());
    let mut jwt = JwtConfig::default();
    jwt.issuers
        .push(pinned("rsa", JwtAlgorithm::Rs256, &[(Some("k"), rsa)]));
    jwt.issuers
        .push(pinned("ec", JwtAlgorithm::Es256, &[(Some("k"), &ec)]));
    let v = verifier(jwt);
    for (iss, pem) in [("rsa", &rsa.public_pem), ("ec", &ec.public_pem)] {
        // The classic confusion: the public key, which anyone has, used as an HMAC secret.
        let forged = sign(
            Algorithm::HS256,
            Some("k"),
            &claims(Some(iss)),
            &EncodingKey::from_secret(pem.as_bytes()).unwrap(),
        );
        let err = v.verify(&forged, "u1", "phone").await.unwrap_err();
        assert!(
            matches!(&err, TokenError::AlgorithmNotAllowed { alg, .. } if alg == "HS256"),
            "{err:?}"
        );
        assert!(err.to_string().starts_with(&format!(
            "jwt alg \"HS256\" is not accepted for issuer \"{iss}\": sign with"
        )));
    }
    // An ES256 token naming an issuer that takes RS256 only.
    let es = ec.sign(Some("k"), &claims(Some("rsa")));
    assert!(matches!(
        v.verify(&es, "u1", "phone").await,
        Err(TokenError::AlgorithmNotAllowed { .. })
    ));
}

#[tokio::test]
async fn a_key_of_another_type_than_the_tokens_alg_is_refused() {
    let (rsa, ec) = (Pair::rsa(), Pair::ec());
    let mut jwt = JwtConfig::default();
    jwt.issuers.push(IssuerConfig::public_keys(
        ISS,
        [JwtAlgorithm::Rs256, JwtAlgorithm::Es256],
        [PublicKeyConfig::new(Some("rsa"), rsa.public_pem.clone())],
    ));
    let v = verifier(jwt);
    let es = ec.sign(Some("rsa"), &claims(Some(ISS)));
    assert_eq!(
        v.verify(&es, "u1", "phone").await,
        Err(TokenError::KeyMismatch {
            alg: JwtAlgorithm::Es256,
            kid: Some("rsa".into())
        })
    );
}

#[tokio::test]
async fn an_unknown_issuer_is_refused() {
    let ec = Pair::ec();
    let mut jwt = system_config();
    jwt.issuers
        .push(pinned(ISS, JwtAlgorithm::Es256, &[(None, &ec)]));
    let v = verifier(jwt);
    let token = ec.sign(None, &claims(Some("https://evil.example/")));
    let err = v.verify(&token, "u1", "phone").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "jwt issuer \"https://evil.example/\" is not configured: add it to [[tokens.jwt.issuers]]"
    );
    // The system secret does not take tokens that name an issuer.
    let token = hs256(SYSTEM_SECRET, &claims(Some("https://evil.example/")));
    assert!(matches!(
        v.verify(&token, "u1", "phone").await,
        Err(TokenError::UnknownIssuer { .. })
    ));
    // Without a system secret a token must name its issuer.
    let mut jwt = JwtConfig::default();
    jwt.issuers
        .push(pinned(ISS, JwtAlgorithm::Es256, &[(None, &ec)]));
    let token = ec.sign(None, &claims(None));
    assert_eq!(
        verifier(jwt).verify(&token, "u1", "phone").await,
        Err(TokenError::MissingClaim { claim: "iss" })
    );
}

#[tokio::test]
async fn a_future_nbf_is_refused_beyond_the_leeway() {
    let v = verifier(system_config());
    let t = 1_900_000_000;
    let token = |nbf: u64| {
        hs256(
            SYSTEM_SECRET,
            &json!({ "sub": "u1", "exp": t + 600, "nbf": nbf }),
        )
    };
    // 30 s of leeway by default.
    assert!(v.verify_at(&token(t + 30), "u1", "phone", t).await.is_ok());
    let err = v
        .verify_at(&token(t + 31), "u1", "phone", t)
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::NotYetValid { not_before: t + 31 });
    assert_eq!(
        err.to_string(),
        "jwt not valid before 1900000031 (nbf): wait, or check the issuer's clock"
    );
}

#[tokio::test]
async fn a_token_for_another_uid_or_device_is_refused() {
    let v = verifier(system_config());
    let token = hs256(SYSTEM_SECRET, &with(claims(None), "device", json!("phone")));
    assert_eq!(
        v.verify(&token, "u2", "phone").await,
        Err(TokenError::WrongUser)
    );
    assert_eq!(
        v.verify(&token, "u1", "tablet").await,
        Err(TokenError::WrongDevice)
    );
    // Without a device claim any device may use it.
    let token = hs256(SYSTEM_SECRET, &claims(None));
    assert_eq!(v.verify(&token, "u1", "tablet").await.unwrap().device, None);
}

#[tokio::test]
async fn an_expired_token_is_refused_after_the_leeway() {
    let v = verifier(system_config());
    let exp = 1_900_000_000;
    let token = hs256(SYSTEM_SECRET, &json!({ "sub": "u1", "exp": exp }));
    let got = v.verify_at(&token, "u1", "phone", exp + 29).await.unwrap();
    assert_eq!(got.expires_at, exp, "the token's own exp, not the leeway's");
    assert_eq!(
        v.verify_at(&token, "u1", "phone", exp + 30).await,
        Err(TokenError::Expired { expired_at: exp })
    );
    let no_exp = hs256(SYSTEM_SECRET, &json!({ "sub": "u1" }));
    assert_eq!(
        v.verify(&no_exp, "u1", "phone").await,
        Err(TokenError::MissingClaim { claim: "exp" })
    );
    let no_sub = hs256(SYSTEM_SECRET, &json!({ "exp": now() + 60 }));
    assert_eq!(
        v.verify(&no_sub, "u1", "phone").await,
        Err(TokenError::MissingClaim { claim: "sub" })
    );
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let ec = Pair::ec();
    let mut jwt = system_config();
    jwt.issuers
        .push(pinned(ISS, JwtAlgorithm::Es256, &[(None, &ec)]));
    let v = verifier(jwt);
    // Signed with another key.
    let other = Pair::ec().sign(None, &claims(Some(ISS)));
    assert_eq!(
        v.verify(&other, "u1", "phone").await,
        Err(TokenError::BadSignature)
    );
    let wrong_secret = hs256("another-secret-0123456789abcdef-0123456789", &claims(None));
    assert_eq!(
        v.verify(&wrong_secret, "u1", "phone").await,
        Err(TokenError::BadSignature)
    );
    // A genuine token whose claims were changed (another uid).
    let genuine = ec.sign(None, &claims(Some(ISS)));
    let parts: Vec<&str> = genuine.split('.').collect();
    let forged_claims = with(claims(Some(ISS)), "sub", json!("u2")).to_string();
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims)
        },
        parts[2]
    );
    assert_eq!(
        v.verify(&forged, "u2", "phone").await,
        Err(TokenError::BadSignature)
    );
}

#[tokio::test]
async fn a_wrong_or_missing_audience_is_refused() {
    let mut jwt = system_config();
    jwt.audience = Some("longlink".into());
    let v = verifier(jwt);
    let aud = |aud: Value| hs256(SYSTEM_SECRET, &with(claims(None), "aud", aud));
    assert!(
        v.verify(&aud(json!("longlink")), "u1", "phone")
            .await
            .is_ok()
    );
    assert!(
        v.verify(&aud(json!(["billing", "longlink"])), "u1", "phone")
            .await
            .is_ok()
    );
    assert_eq!(
        v.verify(&aud(json!("billing")), "u1", "phone").await,
        Err(TokenError::WrongAudience {
            expected: "longlink".into()
        })
    );
    assert_eq!(
        v.verify(&hs256(SYSTEM_SECRET, &claims(None)), "u1", "phone")
            .await,
        Err(TokenError::MissingClaim { claim: "aud" })
    );
}

#[tokio::test]
async fn malformed_jwts_are_refused_with_what_is_wrong() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let v = verifier(system_config());
    let header = b64(r#"{"alg":"HS256"}"#);
    let cases = [
        // The payload is not base64url.
        (
            format!("{header}.***.c2ln"),
            "payload is not base64url without padding",
        ),
        // The claims are not JSON.
        (
            format!("{header}.{}.c2ln", b64("not json")),
            "claims are not",
        ),
        // A claim of the wrong type.
        (
            format!("{header}.{}.c2ln", b64(r#"{"sub":"u1","exp":"soon"}"#)),
            "claims are not",
        ),
        (
            format!("{header}.{}.c2ln", b64(r#"{"sub":"u1","apps":"demo"}"#)),
            "claims are not",
        ),
        // No alg.
        (
            format!("{}.{}.c2ln", b64(r#"{"typ":"JWT"}"#), b64("{}")),
            "header has no alg",
        ),
        // A critical extension.
        (
            format!(
                "{}.{}.c2ln",
                b64(r#"{"alg":"HS256","crit":["exp"]}"#),
                b64("{}")
            ),
            "critical extensions",
        ),
    ];
    for (token, reason) in cases {
        let err = v.verify(&token, "u1", "phone").await.unwrap_err();
        assert!(
            matches!(err, TokenError::MalformedJwt { .. }),
            "{token}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{token}: {err}");
    }
    // A signature that is not base64url.
    let token = hs256(SYSTEM_SECRET, &claims(None));
    let broken = format!("{}*", token);
    assert!(matches!(
        v.verify(&broken, "u1", "phone").await,
        Err(TokenError::MalformedJwt { .. })
    ));
    // Too long to decode at all.
    let huge = format!("{header}.{}.c2ln", "A".repeat(9000));
    assert_eq!(
        v.verify(&huge, "u1", "phone").await,
        Err(TokenError::TooLong {
            bytes: huge.len(),
            max: 8192
        })
    );
    // Not a JWT and not an HMAC token: the HMAC refusal, as before.
    assert_eq!(
        v.verify("nonsense", "u1", "phone").await,
        Err(TokenError::Malformed)
    );
}

#[tokio::test]
async fn a_jwt_is_refused_where_jwts_are_not_configured() {
    let v = Verifier::hmac_only(Tokens::new(HMAC_SECRET));
    let err = v
        .verify(&hs256(SYSTEM_SECRET, &claims(None)), "u1", "phone")
        .await
        .unwrap_err();
    assert_eq!(err, TokenError::JwtNotEnabled);
    let v = Verifier::new(Tokens::new(HMAC_SECRET), &TokensConfig::default()).unwrap();
    assert_eq!(
        v.verify(&hs256(SYSTEM_SECRET, &claims(None)), "u1", "phone")
            .await,
        Err(TokenError::JwtNotEnabled)
    );
}

// ---------------------------------------------------------------------------------------
// The HMAC token, secrets, configuration

#[test]
fn hmac_tokens_verify_on_the_first_poll_and_are_refused_as_before() {
    let hmac = Tokens::new(HMAC_SECRET);
    let v = verifier(system_config());
    let at = 1_900_000_000;
    let token = hmac.issue_until("u1", at + 60);
    let ready = |token: &str, uid: &str, now: u64| {
        v.verify_at(token, uid, "phone", now)
            .now_or_never()
            .expect("an HMAC token needs no await")
    };
    assert_eq!(
        ready(&token, "u1", at),
        Ok(Verified::from_hmac("u1", at + 60))
    );
    assert_eq!(ready(&token, "u2", at), Err(TokenError::WrongUser));
    assert_eq!(
        ready(&token, "u1", at + 60),
        Err(TokenError::Expired {
            expired_at: at + 60
        })
    );
    let forged = Tokens::new(b"other").issue_until("u1", at + 60);
    assert_eq!(ready(&forged, "u1", at), Err(TokenError::BadSignature));
    assert_eq!(ready("u1.x.y", "u1", at), Err(TokenError::Malformed));
    // The documented vector still verifies.
    let vector = Tokens::new(b"6c6f6e676c696e6b2d746573742d736563726574");
    let v = Verifier::hmac_only(vector);
    let got = v
        .verify_at(
            "dTE.1767225600.ZZYWXZD701wJPLbBB0WaufvUbLjTrSTAupgxkFFNyK0",
            "u1",
            "phone",
            1_767_225_599,
        )
        .now_or_never()
        .unwrap()
        .unwrap();
    assert_eq!((got.kind, got.expires_at), (TokenKind::Hmac, 1_767_225_600));
}

#[tokio::test]
async fn secrets_and_tokens_never_appear_in_debug_output_or_errors() {
    let issuer_secret = "issuer-secret-0123456789abcdef-0123456789";
    let ec = Pair::ec();
    let server = JwksServer::start(vec![ec.jwk("k1")]).await;
    let mut jwt = jwks_config(ISS, &[JwtAlgorithm::Es256], &server);
    jwt.hs256_secret = Some(Secret::new(SYSTEM_SECRET));
    jwt.issuers
        .push(IssuerConfig::hs256("billing", Secret::new(issuer_secret)));
    let config = TokensConfig::with_jwt(jwt);
    let v = verifier(config.jwt.clone().unwrap());
    let good = ec.sign(Some("k1"), &claims(Some(ISS)));
    v.verify(&good, "u1", "phone").await.unwrap();

    let none = {
        use base64::Engine;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.",
            b64(r#"{"alg":"none"}"#),
            b64(&claims(None).to_string())
        )
    };
    let tokens = [
        hs256(SYSTEM_SECRET, &claims(None)),
        hs256(issuer_secret, &claims(Some("billing"))),
        good.clone(),
        ec.sign(Some("k9"), &claims(Some(ISS))),
        hs256(SYSTEM_SECRET, &with(claims(None), "exp", json!(1))),
        hs256(
            SYSTEM_SECRET,
            &with(claims(None), "nbf", json!(now() + 3600)),
        ),
        hs256("a-wrong-secret-0123456789abcdef-0123456789", &claims(None)),
        hs256(issuer_secret, &claims(Some("unknown"))),
        sign(
            Algorithm::HS256,
            None,
            &claims(Some(ISS)),
            &EncodingKey::from_secret(ec.public_pem.as_bytes()).unwrap(),
        ),
        none,
        Tokens::new(HMAC_SECRET).issue("u1", Duration::from_secs(60)),
    ];
    let mut printed = vec![format!("{v:?}"), format!("{config:?}"), format!("{v:#?}")];
    for token in &tokens {
        for (uid, device) in [("u1", "phone"), ("u2", "phone")] {
            if let Err(e) = v.verify(token, uid, device).await {
                printed.push(e.to_string());
                printed.push(format!("{e:?}"));
            }
        }
    }
    assert!(printed.len() > 3 + tokens.len(), "refusals were printed");
    for text in &printed {
        for secret in [SYSTEM_SECRET, issuer_secret, "hmac-token-secret"] {
            assert!(!text.contains(secret), "a secret in {text}");
        }
        for token in &tokens {
            assert!(!text.contains(token.as_str()), "a token in {text}");
            let signature = token.rsplit('.').next().unwrap();
            assert!(
                signature.is_empty() || !text.contains(signature),
                "a signature in {text}"
            );
        }
    }
}

#[test]
fn configuration_mistakes_are_refused_when_the_verifier_is_built() {
    let ec = Pair::ec();
    let build = |jwt: JwtConfig| {
        Verifier::new(Tokens::new(HMAC_SECRET), &TokensConfig::with_jwt(jwt))
            .map(|_| ())
            .map_err(|e| (e.problem.clone(), e.to_string()))
    };
    let with_issuer = |issuer: IssuerConfig| {
        let mut jwt = JwtConfig::default();
        jwt.issuers.push(issuer);
        build(jwt)
    };
    let short = "s3cr3t-9b";
    let mut jwt = JwtConfig::default();
    jwt.hs256_secret = Some(Secret::new(short));
    let (problem, message) = build(jwt).unwrap_err();
    assert_eq!(problem, ConfigProblem::ShortSecret { bytes: 9 });
    assert!(!message.contains(short));

    let mut mixed = IssuerConfig::hs256("a", Secret::new(SYSTEM_SECRET));
    mixed.algorithms.push(JwtAlgorithm::Rs256);
    assert_eq!(
        with_issuer(mixed).unwrap_err().0,
        ConfigProblem::AlgorithmsDoNotFitKeys
    );
    let mut two_sources = IssuerConfig::jwks("a", [JwtAlgorithm::Es256], "http://127.0.0.1:1/");
    two_sources
        .public_keys
        .push(PublicKeyConfig::new(None, ec.public_pem.clone()));
    assert_eq!(
        with_issuer(two_sources).unwrap_err().0,
        ConfigProblem::KeySources
    );
    assert_eq!(
        with_issuer(IssuerConfig::public_keys(
            "a",
            [JwtAlgorithm::Es256],
            [PublicKeyConfig::new(
                None,
                "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n"
            )]
        ))
        .unwrap_err()
        .0,
        ConfigProblem::BadPem { index: 0 }
    );
    assert_eq!(
        with_issuer(pinned("a", JwtAlgorithm::Rs256, &[(None, &ec)]))
            .unwrap_err()
            .0,
        ConfigProblem::KeyTypeNotInAlgorithms { index: 0 }
    );
    assert_eq!(
        with_issuer(pinned(
            "a",
            JwtAlgorithm::Es256,
            &[(Some("k"), &ec), (Some("k"), &ec)]
        ))
        .unwrap_err()
        .0,
        ConfigProblem::DuplicateKid { index: 1 }
    );
    let (problem, message) = with_issuer(IssuerConfig::jwks(
        "a",
        [JwtAlgorithm::Rs256],
        "ldap://auth.example/jwks",
    ))
    .unwrap_err();
    assert!(matches!(problem, ConfigProblem::BadJwksUrl { .. }));
    assert_eq!(
        message,
        "[tokens.jwt] issuer \"a\": jwks_url must start with https:// or http://"
    );
    let mut jwt = JwtConfig::default();
    jwt.issuers.push(IssuerConfig::jwks(
        "a",
        [JwtAlgorithm::Rs256],
        "https://auth.example/jwks",
    ));
    jwt.jwks_ca = Some("/nonexistent/ca.pem".into());
    let err = Verifier::new(Tokens::new(b"k"), &TokensConfig::with_jwt(jwt)).unwrap_err();
    assert!(matches!(err.problem, ConfigProblem::JwksCa { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    assert_eq!(
        with_issuer(IssuerConfig::new("a", [])).unwrap_err().0,
        ConfigProblem::KeySources
    );
    let mut no_algs = IssuerConfig::jwks("a", [], "http://127.0.0.1:1/");
    no_algs.audience = Some("x".into());
    assert_eq!(
        with_issuer(no_algs).unwrap_err().0,
        ConfigProblem::NoAlgorithms
    );
    let mut twice = JwtConfig::default();
    twice
        .issuers
        .push(pinned("a", JwtAlgorithm::Es256, &[(None, &ec)]));
    twice
        .issuers
        .push(pinned("a", JwtAlgorithm::Es256, &[(None, &ec)]));
    assert_eq!(build(twice).unwrap_err().0, ConfigProblem::DuplicateIssuer);
    let mut lax = JwtConfig::default();
    lax.leeway = Duration::from_secs(3600);
    assert_eq!(
        build(lax).unwrap_err().0,
        ConfigProblem::LeewayTooLarge { secs: 3600 }
    );
    let mut unlimited = JwtConfig::default();
    unlimited.jwks_refresh_interval = Duration::ZERO;
    assert_eq!(
        build(unlimited).unwrap_err().0,
        ConfigProblem::BadLimit {
            key: "jwks_refresh_interval_secs"
        }
    );
}
