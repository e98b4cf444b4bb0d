//! Real HTTP on loopback for the layer tests: an axum app served on a free
//! port, and reqwest as a tower service of `http::Request` (the client that
//! Kuroko's client layer wraps).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Serves `app` on a free loopback port; its base URL.
pub async fn listen(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let address = listener.local_addr().expect("local address");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{address}")
}

/// reqwest as a tower service of `http::Request<String>`.
#[derive(Clone, Debug, Default)]
pub struct Reqwest(pub reqwest::Client);

type Boxed<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl tower::Service<http::Request<String>> for Reqwest {
    type Response = http::Response<String>;
    type Error = reqwest::Error;
    type Future = Boxed<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<String>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let response = client.execute(reqwest::Request::try_from(request)?).await?;
            let status = response.status();
            let mut out = http::Response::new(response.text().await?);
            *out.status_mut() = status;
            Ok(out)
        })
    }
}
