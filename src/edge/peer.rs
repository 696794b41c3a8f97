//! What the transport knows about the caller: its address and, over mTLS,
//! its verified certificate.

use std::net::IpAddr;
use tonic::{
    codegen::http::Extensions,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};
use x509_parser::prelude::{FromDer, X509Certificate};

/// The caller's IP address.
pub fn ip(extensions: &Extensions) -> Option<IpAddr> {
    let tcp = extensions.get::<TcpConnectInfo>().or_else(|| {
        extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .map(TlsConnectInfo::get_ref)
    })?;
    tcp.remote_addr().map(|address| address.ip())
}

/// The common name of the caller's verified client certificate, if it sent
/// one (rustls has already checked it against the client CA).
pub fn certificate_common_name(extensions: &Extensions) -> Option<String> {
    let certs = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()?
        .peer_certs()?;
    common_name(certs.first()?.as_ref())
}

/// The first common name (CN) in a DER certificate's subject.
pub fn common_name(der: &[u8]) -> Option<String> {
    let (_, certificate) = X509Certificate::from_der(der).ok()?;
    let name = certificate.subject().iter_common_name().next()?;
    name.as_str().ok().map(str::to_owned)
}
