//! Delivery port codec and handshake, exercised through the public API only: every frame
//! round-trips, every truncation asks for more bytes, forged frames fail with the error that
//! names their defect, fragmented streams decode identically, and the handshake only admits
//! holders of the secret.

use herald_protocol::delivery::{
    decode, encode, encode_answers, encode_deliver_batch, Answer, BroadcastMsg, DecodeError,
    DeliverMsg, Frame, FrameReader, FrameType, Outcome, DEFAULT_MAX_FRAME_LEN, NEVER_EXPIRES,
    PROTOCOL_VERSION,
};
use herald_protocol::delivery_auth::{AuthError, ClientAuth, ServerAuth};

fn deliver(seq: u64, device: Option<&str>, payload: &[u8]) -> DeliverMsg {
    DeliverMsg {
        seq,
        user: format!("user-{seq}"),
        device: device.map(str::to_owned),
        message_id: format!("msg-{seq}-é"),
        expires_at_ms: 1_700_000_000_000 + seq,
        payload: payload.to_vec(),
        position: None,
    }
}

fn sample_frames() -> Vec<Frame> {
    vec![
        Frame::Challenge {
            version: PROTOCOL_VERSION,
            nonce: *b"0123456789abcdef",
        },
        Frame::Auth {
            client_nonce: [0xA5; 16],
            mac: [0x5A; 32],
        },
        Frame::AuthOk { mac: [0xFF; 32] },
        Frame::Deliver(vec![deliver(1, None, b"{\"hello\":1}")]),
        Frame::Deliver(vec![
            deliver(2, Some("phone"), &[]),
            deliver(3, None, &[0, 0xFF, b'\n', b'\r']),
            deliver(4, Some("ü/tablet"), &vec![7u8; 4096]),
        ]),
        Frame::Deliver(vec![]),
        Frame::Broadcast(BroadcastMsg {
            seq: u64::MAX,
            message_id: String::new(),
            expires_at_ms: NEVER_EXPIRES,
            payload: b"everyone".to_vec(),
        }),
        Frame::Answers(vec![
            Answer {
                seq: 1,
                outcome: Outcome::Delivered,
                delivered: 3,
            },
            Answer {
                seq: 2,
                outcome: Outcome::Unencodable,
                delivered: 0,
            },
        ]),
        Frame::Answers(vec![]),
    ]
}

fn encoded(frame: &Frame) -> Vec<u8> {
    let mut out = Vec::new();
    encode(frame, &mut out).expect("sample frames are encodable");
    out
}

#[test]
fn every_frame_round_trips_and_appends() {
    let mut stream = b"prefix".to_vec();
    for frame in sample_frames() {
        let before = stream.len();
        encode(&frame, &mut stream).unwrap();
        let (decoded, used) = decode(&stream[before..], DEFAULT_MAX_FRAME_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(decoded, frame);
        assert_eq!(used, stream.len() - before);
    }
    assert!(stream.starts_with(b"prefix"), "encode appends");
}

#[test]
fn batch_helpers_match_encode() {
    let msgs = vec![deliver(1, Some("d"), b"x"), deliver(2, None, b"y")];
    let mut a = Vec::new();
    let mut b = Vec::new();
    encode_deliver_batch(&msgs, &mut a).unwrap();
    encode(&Frame::Deliver(msgs), &mut b).unwrap();
    assert_eq!(a, b);

    let answers = vec![Answer {
        seq: 7,
        outcome: Outcome::Draining,
        delivered: 0,
    }];
    let (mut a, mut b) = (Vec::new(), Vec::new());
    encode_answers(&answers, &mut a).unwrap();
    encode(&Frame::Answers(answers), &mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn every_strict_prefix_needs_more_bytes() {
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        for cut in 0..bytes.len() {
            assert_eq!(
                decode(&bytes[..cut], DEFAULT_MAX_FRAME_LEN),
                Ok(None),
                "{:?} cut at {cut}",
                frame.frame_type()
            );
        }
    }
}

#[test]
fn oversized_length_is_rejected_before_buffering() {
    let mut reader = FrameReader::new(1024);
    // Only the length prefix: 1025 bytes declared, none of them sent.
    reader.feed(&1025u32.to_be_bytes());
    assert_eq!(
        reader.next_frame(),
        Err(DecodeError::FrameTooLarge {
            len: 1025,
            max: 1024
        })
    );
    assert_eq!(reader.buffered(), 0);
    // The maximum itself is accepted.
    let frame = Frame::Broadcast(BroadcastMsg {
        seq: 1,
        message_id: "m".into(),
        expires_at_ms: 0,
        payload: vec![1; 1024 - 1 - 8 - 3 - 8 - 4],
    });
    let bytes = encoded(&frame);
    assert_eq!(bytes.len(), 4 + 1024);
    assert_eq!(decode(&bytes, 1024).unwrap().unwrap().0, frame);
    assert!(matches!(
        decode(&bytes, 1023),
        Err(DecodeError::FrameTooLarge { len: 1024, .. })
    ));
    // A hostile 4 GiB length with the default limit.
    assert!(matches!(
        decode(&[0xFF, 0xFF, 0xFF, 0xFF], DEFAULT_MAX_FRAME_LEN),
        Err(DecodeError::FrameTooLarge { .. })
    ));
}

/// Builds a frame from a type byte and raw body bytes.
fn raw(frame_type: u8, body: &[u8]) -> Vec<u8> {
    let mut out = ((body.len() + 1) as u32).to_be_bytes().to_vec();
    out.push(frame_type);
    out.extend_from_slice(body);
    out
}

fn decode_err(bytes: &[u8]) -> DecodeError {
    decode(bytes, DEFAULT_MAX_FRAME_LEN).expect_err("forged frame must be rejected")
}

#[test]
fn unknown_type_and_empty_frame_are_rejected() {
    assert_eq!(decode_err(&raw(0x04, &[])), DecodeError::UnknownType(0x04));
    assert_eq!(decode_err(&raw(0x00, &[1, 2])), DecodeError::UnknownType(0));
    assert_eq!(decode_err(&[0, 0, 0, 0]), DecodeError::EmptyFrame);
}

#[test]
fn fixed_size_frames_with_wrong_lengths_are_rejected() {
    assert_eq!(
        decode_err(&raw(0x01, &[1; 16])),
        DecodeError::Truncated {
            frame: FrameType::Challenge,
            field: "nonce"
        }
    );
    assert_eq!(
        decode_err(&raw(0x02, &[1; 47])),
        DecodeError::Truncated {
            frame: FrameType::Auth,
            field: "mac"
        }
    );
    assert_eq!(
        decode_err(&raw(0x03, &[1; 33])),
        DecodeError::TrailingBytes {
            frame: FrameType::AuthOk,
            extra: 1
        }
    );
}

#[test]
fn trailing_garbage_inside_a_frame_is_rejected() {
    for frame in sample_frames() {
        let mut bytes = encoded(&frame);
        bytes.push(0xEE);
        let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) + 1;
        bytes[..4].copy_from_slice(&len.to_be_bytes());
        assert_eq!(
            decode_err(&bytes),
            DecodeError::TrailingBytes {
                frame: frame.frame_type(),
                extra: 1
            }
        );
    }
}

#[test]
fn garbage_after_a_frame_is_the_next_frames_problem() {
    let mut bytes = encoded(&Frame::AuthOk { mac: [1; 32] });
    let frame_len = bytes.len();
    bytes.extend_from_slice(&[0, 0]);
    let (_, used) = decode(&bytes, DEFAULT_MAX_FRAME_LEN).unwrap().unwrap();
    assert_eq!(used, frame_len);
    assert_eq!(decode(&bytes[used..], DEFAULT_MAX_FRAME_LEN), Ok(None));
}

#[test]
fn lengths_that_overrun_the_frame_are_rejected() {
    // A string length pointing past the frame end.
    let mut body = 1u16.to_be_bytes().to_vec();
    body.extend_from_slice(&9u64.to_be_bytes());
    body.extend_from_slice(&200u16.to_be_bytes());
    body.extend_from_slice(b"short");
    body.extend_from_slice(&[0u8; 20]);
    assert_eq!(
        decode_err(&raw(0x10, &body)),
        DecodeError::Truncated {
            frame: FrameType::Deliver,
            field: "user"
        }
    );

    // A payload length pointing past the frame end.
    let mut bytes = encoded(&Frame::Broadcast(BroadcastMsg {
        seq: 1,
        message_id: "m".into(),
        expires_at_ms: 2,
        payload: b"abc".to_vec(),
    }));
    let payload_len_at = bytes.len() - 3 - 4;
    bytes[payload_len_at..payload_len_at + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        decode_err(&bytes),
        DecodeError::Truncated {
            frame: FrameType::Broadcast,
            field: "payload"
        }
    );
}

#[test]
fn counts_too_big_for_the_body_are_rejected() {
    // 65535 deliveries declared in a 2-byte body: refused without allocating for them.
    assert_eq!(
        decode_err(&raw(0x10, &u16::MAX.to_be_bytes())),
        DecodeError::CountMismatch {
            frame: FrameType::Deliver,
            declared: u16::MAX,
            fits: 0
        }
    );
    // Two answers declared, one present.
    let mut bytes = encoded(&Frame::Answers(vec![Answer {
        seq: 1,
        outcome: Outcome::Delivered,
        delivered: 1,
    }]));
    bytes[6] = 2;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::CountMismatch {
            frame: FrameType::Answers,
            declared: 2,
            fits: 1
        }
    );
    // Three big messages declared, two present: each is large enough that the up-front
    // minimum-size check passes, so the shortfall is found at the item boundary.
    let msgs = vec![deliver(1, None, &[0; 100]), deliver(2, None, &[0; 100])];
    let mut bytes = Vec::new();
    encode_deliver_batch(&msgs, &mut bytes).unwrap();
    bytes[6] = 3;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::CountMismatch {
            frame: FrameType::Deliver,
            declared: 3,
            fits: 2
        }
    );
}

#[test]
fn invalid_utf8_and_unknown_codes_are_rejected() {
    let mut msg = deliver(1, Some("dev"), b"p");
    msg.user = "XXXX".into();
    let mut bytes = Vec::new();
    encode_deliver_batch(&[msg], &mut bytes).unwrap();
    let at = bytes.windows(4).position(|w| w == b"XXXX").unwrap();
    bytes[at + 1] = 0xC3; // lead byte followed by 'X': not UTF-8
    assert_eq!(
        decode_err(&bytes),
        DecodeError::BadUtf8 {
            frame: FrameType::Deliver,
            field: "user"
        }
    );

    let mut bytes = Vec::new();
    encode_deliver_batch(&[deliver(1, Some("dev"), b"p")], &mut bytes).unwrap();
    let flags_at = 5 + 2 + 8 + 2 + "user-1".len();
    assert_eq!(bytes[flags_at], 1);
    bytes[flags_at] = 0x81;
    assert_eq!(decode_err(&bytes), DecodeError::UnknownFlags(0x81));

    let mut bytes = encoded(&Frame::Answers(vec![Answer {
        seq: 1,
        outcome: Outcome::Expired,
        delivered: 0,
    }]));
    bytes[5 + 2 + 8] = Outcome::ALL.len() as u8;
    assert_eq!(
        decode_err(&bytes),
        DecodeError::UnknownOutcome(Outcome::ALL.len() as u8)
    );
}

#[test]
fn every_single_byte_corruption_is_handled_without_panicking() {
    // Flip each byte of each frame to a few values: decoding must return Ok or Err, never
    // panic, and never claim more bytes than it was given.
    for frame in sample_frames() {
        let bytes = encoded(&frame);
        for i in 0..bytes.len() {
            for v in [0x00, 0x01, 0x7F, 0x80, 0xFF] {
                let mut forged = bytes.clone();
                forged[i] = v;
                if let Ok(Some((_, used))) = decode(&forged, DEFAULT_MAX_FRAME_LEN) {
                    assert!(used <= forged.len());
                }
            }
        }
    }
}

fn stream() -> (Vec<Frame>, Vec<u8>) {
    let mut frames = Vec::new();
    for _ in 0..3 {
        frames.extend(sample_frames());
    }
    let mut bytes = Vec::new();
    for f in &frames {
        encode(f, &mut bytes).unwrap();
    }
    (frames, bytes)
}

#[test]
fn reader_yields_identical_frames_at_every_fragment_size() {
    let (frames, bytes) = stream();
    for size in [1, 2, 5, 10, 100, 1000, bytes.len()] {
        let mut reader = FrameReader::default();
        let mut got = Vec::new();
        for chunk in bytes.chunks(size) {
            reader.feed(chunk);
            while let Some(frame) = reader.next_frame().unwrap() {
                got.push(frame);
            }
        }
        assert_eq!(got, frames, "fragment size {size}");
        assert_eq!(reader.buffered(), 0, "fragment size {size}");
    }
}

#[test]
fn reader_reports_a_forged_frame_mid_stream() {
    let (frames, mut bytes) = stream();
    bytes.extend_from_slice(&raw(0x42, b"nope"));
    let mut reader = FrameReader::default();
    reader.feed(&bytes);
    let mut got = 0;
    let err = loop {
        match reader.next_frame() {
            Ok(Some(_)) => got += 1,
            Ok(None) => panic!("the whole stream was fed; the forged frame must fail"),
            Err(err) => break err,
        }
    };
    assert_eq!(got, frames.len());
    assert_eq!(err, DecodeError::UnknownType(0x42));
}

#[test]
fn handshake_admits_the_secret_holder_both_ways() {
    let secret = b"correct horse battery staple";
    let server = ServerAuth::new(secret, [3; 16]);
    let mut client = ClientAuth::new(secret, [4; 16]);
    // Through the codec, as on the wire.
    let mut wire = Vec::new();
    encode(&server.challenge(), &mut wire).unwrap();
    let (challenge, _) = decode(&wire, DEFAULT_MAX_FRAME_LEN).unwrap().unwrap();
    let auth = client.respond(&challenge).unwrap();
    wire.clear();
    encode(&auth, &mut wire).unwrap();
    let (auth, _) = decode(&wire, DEFAULT_MAX_FRAME_LEN).unwrap().unwrap();
    let ok = server.verify(&auth).unwrap();
    client.confirm(&ok).unwrap();
}

#[test]
fn wrong_secret_fails_on_the_server() {
    let server = ServerAuth::new(b"the real secret, 16+ bytes", [3; 16]);
    let mut client = ClientAuth::new(b"a guessed secret, 16+ bytes", [4; 16]);
    let auth = client.respond(&server.challenge()).unwrap();
    assert_eq!(server.verify(&auth), Err(AuthError::BadClientMac));
}

#[test]
fn server_without_the_secret_fails_on_the_client() {
    let secret = b"the real secret, 16+ bytes";
    let real = ServerAuth::new(secret, [3; 16]);
    let impostor = ServerAuth::new(b"impostor's guess, 16+ bytes", [3; 16]);
    let mut client = ClientAuth::new(secret, [4; 16]);
    let auth = client.respond(&impostor.challenge()).unwrap();
    // The impostor cannot verify, and an AuthOk computed under its key fails on the client.
    assert_eq!(impostor.verify(&auth), Err(AuthError::BadClientMac));
    let mut accomplice = ClientAuth::new(b"impostor's guess, 16+ bytes", [4; 16]);
    let forged_ok = impostor
        .verify(&accomplice.respond(&impostor.challenge()).unwrap())
        .unwrap();
    assert_eq!(client.confirm(&forged_ok), Err(AuthError::BadServerMac));
    // The real server's AuthOk passes.
    client.confirm(&real.verify(&auth).unwrap()).unwrap();
}

#[test]
fn replayed_auth_fails_against_another_server_nonce() {
    let secret = b"the real secret, 16+ bytes";
    let first = ServerAuth::new(secret, [1; 16]);
    let mut client = ClientAuth::new(secret, [9; 16]);
    let recorded = client.respond(&first.challenge()).unwrap();
    assert!(first.verify(&recorded).is_ok());
    let second = ServerAuth::new(secret, [2; 16]);
    assert_eq!(second.verify(&recorded), Err(AuthError::BadClientMac));
}

#[test]
fn reflected_server_mac_is_not_a_client_mac() {
    // An attacker who relays the edge's own AuthOk MAC back as an Auth gains nothing.
    let secret = b"the real secret, 16+ bytes";
    let server = ServerAuth::new(secret, [1; 16]);
    let mut client = ClientAuth::new(secret, [9; 16]);
    let Frame::AuthOk { mac } = server
        .verify(&client.respond(&server.challenge()).unwrap())
        .unwrap()
    else {
        panic!("AuthOk expected")
    };
    let reflected = Frame::Auth {
        client_nonce: [9; 16],
        mac,
    };
    assert_eq!(server.verify(&reflected), Err(AuthError::BadClientMac));
}
