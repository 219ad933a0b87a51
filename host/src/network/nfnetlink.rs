//! A small synchronous nf_tables client: batches of nf_tables messages
//! over a NETLINK_NETFILTER socket, in-process, without the `nft` binary.
//!
//! netlink-packet-netfilter builds the messages; netlink-sys is the socket.
//! A batch (NFNL_MSG_BATCH_BEGIN, the messages, NFNL_MSG_BATCH_END) is one
//! transaction: the kernel applies all of it or none. Every message asks for
//! an acknowledgement, so that each one is answered (an ack or an error) and
//! a refusal names the message it refused. The kernel handles a batch
//! within our sendmsg(2), so the answers are waiting once it returns.
//!
//! Used synchronously for the same reasons as netlink.rs: the shim has no
//! async runtime and must not grow threads.

use std::io;
use std::os::fd::AsFd;

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST,
};
use netlink_packet_netfilter::nftables::{NfTablesMessage, TableAttribute, TableMessage};
use netlink_packet_netfilter::none::ControlMessage;
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

/// nfgenmsg.res_id of a batch's begin and end: the subsystem it is for.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// How long an answer may take: the kernel answers within our send, so
/// this only bounds a kernel that does not.
const ANSWER_TIMEOUT_MS: u16 = 5000;

#[derive(Debug, thiserror::Error)]
pub enum NfnlError {
    #[error("open a netfilter netlink socket")]
    Open(#[source] io::Error),
    #[error("send an nf_tables batch")]
    Send(#[source] io::Error),
    #[error("read nf_tables' answer")]
    Receive(#[source] io::Error),
    #[error("nf_tables did not answer within {ANSWER_TIMEOUT_MS} ms")]
    NoAnswer,
    #[error("decode nf_tables' answer: {0}")]
    Decode(String),
    /// The kernel refused the batch (nothing of it was applied); `what`
    /// names the first message it refused.
    #[error("nf_tables refused to {what}")]
    Refused {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl NfnlError {
    /// The errno of a refusal: ENOENT when a table or set the batch
    /// changes is not there, say.
    pub fn errno(&self) -> Option<i32> {
        match self {
            NfnlError::Refused { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// One transaction being put together: messages with their flags and
/// what each does, for the error that names it.
#[derive(Default)]
pub struct Batch {
    messages: Vec<(NfTablesMessage, u16, String)>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Add a message; `what` completes "nf_tables refused to ...".
    pub fn push(&mut self, message: NfTablesMessage, flags: u16, what: impl Into<String>) {
        self.messages.push((message, flags, what.into()));
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    /// What each message does, in order.
    pub fn whats(&self) -> Vec<&str> {
        self.messages.iter().map(|(_, _, w)| w.as_str()).collect()
    }
}

/// One NETLINK_NETFILTER socket, in the network namespace it was opened in.
pub struct NfTables {
    socket: Socket,
    seq: u32,
}

fn packet(
    inner: NetfilterMessageInner,
    family: NetfilterProtoFamily,
    res_id: u16,
    flags: u16,
    seq: u32,
) -> NetlinkMessage<NetfilterMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | flags;
    header.sequence_number = seq;
    let message = NetfilterMessage::new(NetfilterHeader::new(family, 0, res_id), inner);
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
    packet.finalize();
    packet
}

fn append(buf: &mut Vec<u8>, packet: &NetlinkMessage<NetfilterMessage>) {
    let start = buf.len();
    buf.resize(start + packet.buffer_len(), 0);
    packet.serialize(&mut buf[start..]);
}

impl NfTables {
    pub fn open() -> Result<NfTables, NfnlError> {
        let mut socket = Socket::new(NETLINK_NETFILTER).map_err(NfnlError::Open)?;
        socket.bind_auto().map_err(NfnlError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NfnlError::Open)?;
        Ok(NfTables { socket, seq: 0 })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    /// Apply `batch` as one transaction for tables of family `family`.
    pub fn apply(&mut self, family: NetfilterProtoFamily, batch: Batch) -> Result<(), NfnlError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        let begin = self.next_seq();
        append(
            &mut buf,
            &packet(
                ControlMessage::BatchBegin.into(),
                NetfilterProtoFamily::Unspec,
                NFNL_SUBSYS_NFTABLES,
                0,
                begin,
            ),
        );
        let first = begin.wrapping_add(1);
        let mut whats = Vec::with_capacity(batch.len());
        for (message, flags, what) in batch.messages {
            let seq = self.next_seq();
            append(
                &mut buf,
                &packet(message.into(), family, 0, flags | NLM_F_ACK, seq),
            );
            whats.push(what);
        }
        let end = self.next_seq();
        append(
            &mut buf,
            &packet(
                ControlMessage::BatchEnd.into(),
                NetfilterProtoFamily::Unspec,
                NFNL_SUBSYS_NFTABLES,
                0,
                end,
            ),
        );
        self.socket.send(&buf, 0).map_err(NfnlError::Send)?;

        // One answer per message; the first refusal in the batch's order
        // is the one reported (a later one may only follow from it).
        let mut answered = 0;
        let mut refused: Option<(usize, io::Error)> = None;
        while answered < whats.len() {
            for (seq, code) in self.answers()? {
                let Some(i) = seq
                    .checked_sub(first)
                    .map(|i| i as usize)
                    .filter(|&i| i < whats.len())
                else {
                    // The batch as a whole refused (no CAP_NET_ADMIN, say):
                    // its messages get no answers of their own.
                    if let (true, Some(source)) = (seq == begin || seq == end, code) {
                        return Err(NfnlError::Refused {
                            what: "start an nf_tables transaction".into(),
                            source,
                        });
                    }
                    continue;
                };
                answered += 1;
                if let Some(e) = code {
                    if !matches!(refused, Some((j, _)) if j <= i) {
                        refused = Some((i, e));
                    }
                }
            }
        }
        match refused {
            None => Ok(()),
            Some((i, source)) => Err(NfnlError::Refused {
                what: whats.swap_remove(i),
                source,
            }),
        }
    }

    /// Whether table `name` of family `family` exists.
    pub fn table_exists(
        &mut self,
        family: NetfilterProtoFamily,
        name: &str,
    ) -> Result<bool, NfnlError> {
        let seq = self.next_seq();
        let msg = NfTablesMessage::GetTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.to_string())],
        });
        let mut buf = Vec::new();
        append(&mut buf, &packet(msg.into(), family, 0, NLM_F_ACK, seq));
        self.socket.send(&buf, 0).map_err(NfnlError::Send)?;
        let mut found = false;
        loop {
            for (s, code) in self.answers_with(|m| {
                found |= matches!(
                    m,
                    NetfilterMessage {
                        inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(_)),
                        ..
                    }
                )
            })? {
                if s != seq {
                    continue;
                }
                return match code {
                    None => Ok(found),
                    Some(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
                    Some(source) => Err(NfnlError::Refused {
                        what: format!("look up table {name}"),
                        source,
                    }),
                };
            }
        }
    }

    /// The acks and errors of one read: (sequence number, error if any).
    fn answers(&mut self) -> Result<Vec<(u32, Option<io::Error>)>, NfnlError> {
        self.answers_with(|_| {})
    }

    fn answers_with(
        &mut self,
        mut other: impl FnMut(&NetfilterMessage),
    ) -> Result<Vec<(u32, Option<io::Error>)>, NfnlError> {
        let mut fds = [PollFd::new(self.socket.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, PollTimeout::from(ANSWER_TIMEOUT_MS))
            .map_err(|e| NfnlError::Receive(e.into()))?;
        if ready == 0 {
            return Err(NfnlError::NoAnswer);
        }
        let (data, _) = self.socket.recv_from_full().map_err(NfnlError::Receive)?;
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            let reply = NetlinkMessage::<NetfilterMessage>::deserialize(&data[offset..])
                .map_err(|e| NfnlError::Decode(e.to_string()))?;
            let len = reply.header.length as usize;
            if len == 0 {
                break;
            }
            offset += (len + 3) & !3;
            match reply.payload {
                NetlinkPayload::Error(e) => {
                    let code = e.code.map(|_| e.to_io());
                    out.push((reply.header.sequence_number, code));
                }
                NetlinkPayload::InnerMessage(m) => other(&m),
                _ => {}
            }
        }
        Ok(out)
    }
}
