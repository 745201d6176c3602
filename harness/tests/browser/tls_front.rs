//! https in front of the load balancer, as a TLS-terminating proxy would be: a certificate for
//! `localhost` made by the test (rcgen), rustls on the listening side and the bytes passed on to
//! the load balancer unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use rcgen::PublicKeyData;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A bound https listener; [`TlsFront::forward_to`] starts passing connections on.
pub struct TlsFront {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    /// Base64 of the SHA-256 of the certificate's public key, for Chromium's
    /// `--ignore-certificate-errors-spki-list`.
    pub spki_sha256: String,
}

impl TlsFront {
    pub async fn bind() -> TlsFront {
        let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("a certificate");
        let spki =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &certified.signing_key.subject_public_key_info());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der()));
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .expect("the certificate and its key");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsFront {
            listener: TcpListener::bind("127.0.0.1:0").await.expect("a port for https"),
            acceptor: TlsAcceptor::from(Arc::new(config)),
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki.as_ref()),
        }
    }

    /// `https://localhost:PORT`: the gateway's public URL.
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.listener.local_addr().expect("bound").port())
    }

    /// Serves until the returned task is aborted: each connection's TLS ends here and its
    /// plaintext goes to `target`.
    pub fn forward_to(self, target: SocketAddr) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            while let Ok((socket, _)) = self.listener.accept().await {
                let acceptor = self.acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(socket).await else { return };
                    let Ok(mut upstream) = TcpStream::connect(target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                });
            }
        })
    }
}
