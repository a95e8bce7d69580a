//! A raw HTTP/2 gRPC client on the `h2` crate that sends one gRPC message per DATA frame, each
//! flushed as soon as flow control allows, as grpcio and grpcurl do (tonic's client packs many
//! messages into one frame, so it never shows what these clients do to a server).

use std::{future::poll_fn, net::SocketAddr};

use h2::client::{ResponseFuture, SendRequest};
use h2::{RecvStream, SendStream};
use http::{HeaderMap, Request};
use prost::bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use tokio::{net::TcpStream, task::JoinHandle};

/// One HTTP/2 connection to the server.
pub(crate) struct Connection {
    send: SendRequest<Bytes>,
    driver: JoinHandle<Result<(), h2::Error>>,
    addr: SocketAddr,
    token: String,
    /// The client's end of the TCP connection, as the server logs it.
    pub(crate) local_addr: SocketAddr,
}

impl Connection {
    /// Connects with h2's default client settings.
    pub(crate) async fn open(addr: SocketAddr, token: &str) -> Self {
        Self::open_with(addr, token, &h2::client::Builder::new()).await
    }

    /// Connects with `builder`'s settings (windows, frame sizes).
    pub(crate) async fn open_with(
        addr: SocketAddr,
        token: &str,
        builder: &h2::client::Builder,
    ) -> Self {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        tcp.set_nodelay(true).expect("nodelay");
        let local_addr = tcp.local_addr().expect("local address");
        let (send, mut connection) = builder.handshake(tcp).await.expect("HTTP/2 handshake");
        let mut pings = connection.ping_pong().expect("ping handle");
        let driver = tokio::spawn(connection);
        // A PING round trip: the server's SETTINGS (its windows) come before its PONG, so every
        // call starts with the server's windows applied, whatever the timing.
        pings
            .ping(h2::Ping::opaque())
            .await
            .expect("the server answers a PING");
        Self {
            send,
            driver,
            addr,
            token: token.to_owned(),
            local_addr,
        }
    }

    /// Starts a call of `path` (e.g. `/lms.v1.PersonService/ImportPeople`): sends its HEADERS.
    pub(crate) async fn call(&self, path: &str) -> Result<Call, h2::Error> {
        let mut send = self.send.clone().ready().await?;
        let request = Request::post(format!("http://{}{path}", self.addr))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .header("authorization", format!("Bearer {}", self.token))
            .body(())
            .expect("request");
        let (response, stream) = send.send_request(request, false)?;
        Ok(Call {
            sender: Sender { stream },
            responses: Responses {
                response: Some(response),
                body: None,
                buffer: BytesMut::new(),
                status: None,
            },
        })
    }

    /// Makes a unary call: one request message, then reads one response message and the status.
    pub(crate) async fn unary<Req: prost::Message, Resp: prost::Message + Default>(
        &self,
        path: &str,
        request: &Req,
    ) -> Result<(Option<Resp>, GrpcStatus), h2::Error> {
        let Call {
            mut sender,
            mut responses,
        } = self.call(path).await?;
        sender.message(request).await?;
        sender.finish()?;
        let message = responses.message().await?;
        let status = responses.status().await?;
        Ok((message, status))
    }

    /// Returns whether the connection has ended (closed or broken).
    pub(crate) fn is_closed(&self) -> bool {
        self.driver.is_finished()
    }

    /// Drops the client's handle and waits for the connection to end; returns how it ended.
    ///
    /// The connection ends once every call on it has been dropped too.
    pub(crate) async fn close(self) -> Result<(), h2::Error> {
        drop(self.send);
        tokio::time::timeout(std::time::Duration::from_secs(30), self.driver)
            .await
            .expect("the connection ends within 30 s of its last call being dropped")
            .expect("connection task")
    }
}

/// A call in progress: its sending half and its receiving half, usable from different tasks.
pub(crate) struct Call {
    /// Sends request messages.
    pub(crate) sender: Sender,
    /// Reads response messages and the final status.
    pub(crate) responses: Responses,
}

/// Sends the request messages of a call, one DATA frame each.
pub(crate) struct Sender {
    stream: SendStream<Bytes>,
}

impl Sender {
    /// Sends `message` in one DATA frame of its own (5-byte gRPC prefix + protobuf).
    pub(crate) async fn message<M: prost::Message>(
        &mut self,
        message: &M,
    ) -> Result<(), h2::Error> {
        self.frame(grpc_frame(message)).await
    }

    /// Sends `bytes` as one DATA frame once the peer's flow-control window has room for it.
    pub(crate) async fn frame(&mut self, bytes: Bytes) -> Result<(), h2::Error> {
        let needed = bytes.len();
        self.stream.reserve_capacity(needed);
        while self.stream.capacity() < needed {
            match poll_fn(|cx| self.stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error),
                None => break, // closed: send_data below reports why
            }
        }
        self.stream.send_data(bytes, false)
    }

    /// Sends an empty DATA frame without waiting for window room (for abuse tests).
    pub(crate) fn empty_frame(&mut self) -> Result<(), h2::Error> {
        self.stream.send_data(Bytes::new(), false)
    }

    /// Ends the request stream (an empty DATA frame with END_STREAM, as grpcio sends it).
    pub(crate) fn finish(&mut self) -> Result<(), h2::Error> {
        self.stream.send_data(Bytes::new(), true)
    }
}

/// A call's `grpc-status` and `grpc-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrpcStatus {
    /// The status code (0 is OK).
    pub(crate) code: i32,
    /// The message, percent-decoding left undone.
    pub(crate) message: String,
}

/// Reads the response of a call.
pub(crate) struct Responses {
    response: Option<ResponseFuture>,
    body: Option<RecvStream>,
    buffer: BytesMut,
    status: Option<GrpcStatus>,
}

impl Responses {
    /// Returns the next response message, or `None` at the end of the response.
    pub(crate) async fn message<M: prost::Message + Default>(
        &mut self,
    ) -> Result<Option<M>, h2::Error> {
        Ok(self
            .raw_message()
            .await?
            .map(|bytes| M::decode(bytes).expect("response message decodes")))
    }

    /// Reads to the end of the response and returns its status.
    pub(crate) async fn status(&mut self) -> Result<GrpcStatus, h2::Error> {
        while self.raw_message().await?.is_some() {}
        Ok(self
            .status
            .clone()
            .expect("a gRPC response ends with grpc-status"))
    }

    /// Returns the next whole message's protobuf bytes, reading DATA frames as needed.
    async fn raw_message(&mut self) -> Result<Option<Bytes>, h2::Error> {
        if let Some(response) = self.response.take() {
            let (parts, body) = response.await?.into_parts();
            assert_eq!(parts.status, http::StatusCode::OK, "HTTP status");
            if parts.headers.contains_key("grpc-status") {
                // Trailers-only response: no messages.
                self.status = Some(status_of(&parts.headers));
                return Ok(None);
            }
            self.body = Some(body);
        }
        loop {
            if self.buffer.len() >= 5 {
                let length = u32::from_be_bytes(self.buffer[1..5].try_into().unwrap()) as usize;
                if self.buffer.len() >= 5 + length {
                    self.buffer.advance(5);
                    return Ok(Some(self.buffer.split_to(length).freeze()));
                }
            }
            let Some(body) = self.body.as_mut() else {
                return Ok(None);
            };
            match body.data().await {
                Some(Ok(chunk)) => {
                    let _ = body.flow_control().release_capacity(chunk.len());
                    self.buffer.extend_from_slice(&chunk);
                }
                Some(Err(error)) => return Err(error),
                None => {
                    let trailers = body.trailers().await?.unwrap_or_default();
                    self.status = Some(status_of(&trailers));
                    self.body = None;
                    return Ok(None);
                }
            }
        }
    }
}

/// Reads `grpc-status` and `grpc-message` from trailers (or trailers-only headers).
fn status_of(headers: &HeaderMap) -> GrpcStatus {
    let text = |name: &str| {
        headers
            .get(name)
            .map(|value| value.to_str().unwrap_or_default().to_owned())
    };
    GrpcStatus {
        code: text("grpc-status")
            .expect("grpc-status present")
            .parse()
            .expect("numeric grpc-status"),
        message: text("grpc-message").unwrap_or_default(),
    }
}

/// Returns `message` as a gRPC length-prefixed frame: flag 0 (uncompressed), 4-byte length, bytes.
pub(crate) fn grpc_frame<M: prost::Message>(message: &M) -> Bytes {
    let length = message.encoded_len();
    let mut bytes = BytesMut::with_capacity(5 + length);
    bytes.put_u8(0);
    bytes.put_u32(u32::try_from(length).expect("message under 4 GiB"));
    message.encode(&mut bytes).expect("buffer has room");
    bytes.freeze()
}
