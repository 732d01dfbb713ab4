//! Tests of `PciTransport` against the device model in `testing`.

use std::vec;
use std::vec::Vec;

use super::testing::{ModelDevice, ModelNotification, ModelQueueSettings, ModelSettings};
use super::*;
use crate::features::{
    VIRTIO_F_EVENT_IDX, VIRTIO_F_ORDER_PLATFORM, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_MAC,
    VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS,
};
use crate::QueueAddresses;

const ACKNOWLEDGE: DeviceStatus = DeviceStatus::ACKNOWLEDGE;
const DRIVER: DeviceStatus = DeviceStatus::DRIVER;
const FEATURES_OK: DeviceStatus = DeviceStatus::FEATURES_OK;

fn features(bits: &[u32]) -> Features {
    bits.iter().fold(Features::EMPTY, |set, &bit| set.with(bit))
}

fn device_offering(offered: Features) -> ModelDevice {
    ModelDevice::new(ModelSettings {
        offered,
        ..ModelSettings::default()
    })
}

/// Returns a device and transport that completed feature negotiation, ready for
/// queue setup.
fn negotiated(settings: ModelSettings) -> (ModelDevice, PciTransport<testing::ModelRegion>) {
    let device = ModelDevice::new(settings);
    let mut transport = device.transport();
    transport
        .initialize(Features::EMPTY, Features::EMPTY)
        .expect("the model accepts VERSION_1");
    (device, transport)
}

fn queue_addresses(size: u16) -> QueueAddresses {
    QueueAddresses {
        descriptor_area: 0x1_2345_6000,
        driver_area: 0x1_2345_7000,
        device_area: 0xfedc_ba98_7654_3000,
        size,
    }
}

#[test]
fn negotiation_takes_offered_and_supported() {
    let offered = features(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_CSUM,
        VIRTIO_NET_F_MRG_RXBUF,
    ]);
    let supported = features(&[
        VIRTIO_NET_F_MAC,
        VIRTIO_NET_F_STATUS,
        VIRTIO_NET_F_MRG_RXBUF,
    ]);
    let device = device_offering(offered);
    let mut transport = device.transport();

    let negotiated = transport.initialize(supported, Features::EMPTY);

    let expected = features(&[VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF]);
    assert_eq!(negotiated, Ok(expected));
    assert_eq!(device.driver_features(), expected);
    assert_eq!(device.status(), ACKNOWLEDGE | DRIVER | FEATURES_OK);
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn negotiation_status_sequence_ends_driver_ok() {
    let device = device_offering(Features::from_bit(VIRTIO_F_VERSION_1));
    let mut transport = device.transport();

    transport
        .initialize(Features::EMPTY, Features::EMPTY)
        .expect("VERSION_1 is offered");
    transport.driver_ok();

    let expected = vec![
        DeviceStatus::RESET,
        ACKNOWLEDGE,
        ACKNOWLEDGE | DRIVER,
        ACKNOWLEDGE | DRIVER | FEATURES_OK,
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DeviceStatus::DRIVER_OK,
    ];
    assert_eq!(device.status_writes(), expected);
    assert_eq!(
        transport.status(),
        ACKNOWLEDGE | DRIVER | FEATURES_OK | DeviceStatus::DRIVER_OK
    );
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn negotiation_reports_order_platform() {
    let offered = features(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_ORDER_PLATFORM,
        VIRTIO_F_EVENT_IDX,
    ]);
    let device = device_offering(offered);
    let mut transport = device.transport();

    let negotiated = transport
        .initialize(features(&[VIRTIO_F_ORDER_PLATFORM]), Features::EMPTY)
        .expect("all requested features are offered");

    assert!(negotiated.has(VIRTIO_F_ORDER_PLATFORM));
    assert!(
        !negotiated.has(VIRTIO_F_EVENT_IDX),
        "EVENT_IDX was not supported"
    );
    assert!(device.driver_features().has(VIRTIO_F_ORDER_PLATFORM));
}

#[test]
fn negotiation_drops_notification_data() {
    let offered = features(&[
        VIRTIO_F_VERSION_1,
        VIRTIO_F_NOTIFICATION_DATA,
        VIRTIO_F_RING_RESET,
    ]);
    let device = device_offering(offered);
    let mut transport = device.transport();

    let negotiated = transport
        .initialize(offered, Features::EMPTY)
        .expect("VERSION_1 is offered");

    assert_eq!(negotiated, Features::from_bit(VIRTIO_F_VERSION_1));
    assert_eq!(
        device.driver_features(),
        Features::from_bit(VIRTIO_F_VERSION_1)
    );
}

#[test]
fn device_without_version_1_fails_and_is_reset() {
    let offered = features(&[VIRTIO_NET_F_MAC]);
    let device = device_offering(offered);
    let mut transport = device.transport();

    let result = transport.initialize(features(&[VIRTIO_NET_F_MAC]), Features::EMPTY);

    let missing = Features::from_bit(VIRTIO_F_VERSION_1);
    assert_eq!(
        result,
        Err(TransportError::MissingFeatures { offered, missing })
    );
    assert_eq!(device.status(), DeviceStatus::RESET);
    assert_eq!(device.driver_features(), Features::EMPTY);
    let writes = device.status_writes();
    assert_eq!(
        writes[writes.len() - 2],
        ACKNOWLEDGE | DRIVER | DeviceStatus::FAILED
    );
    assert_eq!(writes.last(), Some(&DeviceStatus::RESET));
}

#[test]
fn missing_required_feature_is_named() {
    let offered = features(&[VIRTIO_F_VERSION_1, VIRTIO_NET_F_CSUM]);
    let device = device_offering(offered);
    let mut transport = device.transport();

    let result = transport.initialize(Features::EMPTY, features(&[VIRTIO_NET_F_MAC]));

    let missing = Features::from_bit(VIRTIO_NET_F_MAC);
    assert_eq!(
        result,
        Err(TransportError::MissingFeatures { offered, missing })
    );
    assert_eq!(device.status(), DeviceStatus::RESET);
}

#[test]
fn rejected_features_ok_fails_and_is_reset() {
    let offered = features(&[VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC]);
    let device = ModelDevice::new(ModelSettings {
        offered,
        rejects_features_ok: true,
        ..ModelSettings::default()
    });
    let mut transport = device.transport();

    let result = transport.initialize(features(&[VIRTIO_NET_F_MAC]), Features::EMPTY);

    assert_eq!(
        result,
        Err(TransportError::FeaturesRejected {
            offered,
            requested: offered
        })
    );
    assert_eq!(device.status(), DeviceStatus::RESET);
    assert!(device
        .status_writes()
        .contains(&(ACKNOWLEDGE | DRIVER | FEATURES_OK)));
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn slow_reset_is_awaited() {
    let device = ModelDevice::new(ModelSettings {
        reset_reads: 5,
        ..ModelSettings::default()
    });
    let mut transport = device.transport();
    transport
        .initialize(Features::EMPTY, Features::EMPTY)
        .expect("first reset starts from 0");
    let reads_before = device.status_reads();

    assert_eq!(transport.reset(), Ok(()));

    assert!(
        device.status_reads() - reads_before >= 6,
        "5 stale reads, then 0"
    );
    assert_eq!(transport.status(), DeviceStatus::RESET);
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn reset_that_never_completes_times_out() {
    let device = ModelDevice::new(ModelSettings {
        reset_reads: RESET_POLL_LIMIT + 1,
        ..ModelSettings::default()
    });
    let mut transport = device.transport();
    transport
        .initialize(Features::EMPTY, Features::EMPTY)
        .expect("first reset starts from 0");

    let result = transport.reset();

    let status = ACKNOWLEDGE | DRIVER | FEATURES_OK;
    assert_eq!(
        result,
        Err(TransportError::ResetTimeout {
            status,
            polls: RESET_POLL_LIMIT
        })
    );
}

#[test]
fn queue_setup_writes_areas_and_enables() {
    let (device, mut transport) = negotiated(ModelSettings::default());

    let notifier = transport
        .setup_queue(1, &queue_addresses(128), Some(2))
        .expect("valid queue");

    let queue = device.queue(1);
    assert_eq!(queue.size, 128);
    assert_eq!(queue.descriptor_area, 0x1_2345_6000);
    assert_eq!(queue.driver_area, 0x1_2345_7000);
    assert_eq!(queue.device_area, 0xfedc_ba98_7654_3000);
    assert_eq!(queue.msix_vector, 2);
    assert!(queue.enabled);
    assert!(!device.queue(0).enabled, "only the selected queue changes");
    assert_eq!(notifier.queue(), 1);
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn notify_writes_queue_index_at_doorbell() {
    let (device, mut transport) = negotiated(ModelSettings::default());
    let notifier = transport
        .setup_queue(1, &queue_addresses(256), None)
        .expect("valid queue");

    transport.notify(notifier);

    // Queue 1 has queue_notify_off 1; the default multiplier is 4.
    assert_eq!(notifier.doorbell_offset(), 4);
    assert_eq!(
        device.notifications(),
        [ModelNotification {
            offset: 4,
            value: 1
        }]
    );
}

#[test]
fn max_queue_size_reads_selected_queue() {
    let settings = ModelSettings {
        queues: vec![
            ModelQueueSettings {
                max_size: 1024,
                notify_off: 0,
            },
            ModelQueueSettings {
                max_size: 64,
                notify_off: 1,
            },
        ],
        ..ModelSettings::default()
    };
    let (_device, mut transport) = negotiated(settings);

    assert_eq!(transport.num_queues(), 2);
    assert_eq!(transport.max_queue_size(0), Ok(1024));
    assert_eq!(transport.max_queue_size(1), Ok(64));
}

#[test]
fn queue_of_size_zero_is_unavailable() {
    let settings = ModelSettings {
        queues: vec![
            ModelQueueSettings {
                max_size: 256,
                notify_off: 0,
            },
            ModelQueueSettings {
                max_size: 0,
                notify_off: 1,
            },
        ],
        ..ModelSettings::default()
    };
    let (device, mut transport) = negotiated(settings);

    let result = transport.setup_queue(1, &queue_addresses(256), None);

    assert_eq!(
        result,
        Err(TransportError::QueueUnavailable {
            queue: 1,
            num_queues: 2
        })
    );
    assert!(!device.queue(1).enabled);
}

#[test]
fn queue_index_past_num_queues_is_unavailable() {
    let (_device, mut transport) = negotiated(ModelSettings::default());

    let result = transport.max_queue_size(2);

    assert_eq!(
        result,
        Err(TransportError::QueueUnavailable {
            queue: 2,
            num_queues: 2
        })
    );
}

#[test]
fn queue_size_above_maximum_is_rejected() {
    let (device, mut transport) = negotiated(ModelSettings::default());

    let result = transport.setup_queue(0, &queue_addresses(512), None);

    let expected = TransportError::QueueSizeTooLarge {
        queue: 0,
        requested: 512,
        maximum: 256,
    };
    assert_eq!(result, Err(expected));
    assert_eq!(device.queue(0).size, 256, "size register untouched");
    assert_eq!(device.queue(0).descriptor_area, 0);
    assert!(!device.queue(0).enabled);
}

#[test]
fn queue_size_not_power_of_two_is_rejected() {
    let (device, mut transport) = negotiated(ModelSettings::default());

    for size in [0, 100] {
        let result = transport.setup_queue(0, &queue_addresses(size), None);
        assert_eq!(
            result,
            Err(TransportError::QueueSizeNotPowerOfTwo { queue: 0, size })
        );
    }
    assert!(!device.queue(0).enabled);
}

#[test]
fn doorbell_offset_is_notify_off_times_multiplier() {
    let cases = [
        // (notify_off_multiplier, queue_notify_off, expected doorbell offset)
        (4, 3, 12),
        (0x1000, 2, 0x2000),
        (0, 7, 0),
        (2, 0, 0),
    ];
    for (multiplier, notify_off, expected) in cases {
        let settings = ModelSettings {
            queues: vec![ModelQueueSettings {
                max_size: 256,
                notify_off,
            }],
            notify_off_multiplier: multiplier,
            notify_length: 0x4000,
            ..ModelSettings::default()
        };
        let (device, mut transport) = negotiated(settings);

        let notifier = transport
            .setup_queue(0, &queue_addresses(256), None)
            .expect("in range");
        transport.notify(notifier);

        assert_eq!(
            notifier.doorbell_offset(),
            expected,
            "multiplier {multiplier}"
        );
        assert_eq!(
            device.notifications(),
            [ModelNotification {
                offset: expected,
                value: 0
            }]
        );
    }
}

#[test]
fn doorbell_at_end_of_notify_region() {
    let settings = ModelSettings {
        queues: vec![ModelQueueSettings {
            max_size: 256,
            notify_off: 1023,
        }],
        notify_off_multiplier: 4,
        notify_length: 0x1000,
        ..ModelSettings::default()
    };
    let (_device, mut transport) = negotiated(settings);

    let notifier = transport.setup_queue(0, &queue_addresses(256), None);

    assert_eq!(
        notifier.map(|notifier| notifier.doorbell_offset()),
        Ok(0xffc)
    );
}

#[test]
fn doorbell_outside_notify_region_is_rejected() {
    let settings = ModelSettings {
        queues: vec![ModelQueueSettings {
            max_size: 256,
            notify_off: 1024,
        }],
        notify_off_multiplier: 4,
        notify_length: 0x1000,
        ..ModelSettings::default()
    };
    let (device, mut transport) = negotiated(settings);

    let result = transport.setup_queue(0, &queue_addresses(256), None);

    let expected = TransportError::NotifyOffsetOutOfRange {
        queue: 0,
        queue_notify_off: 1024,
        notify_off_multiplier: 4,
        notify_length: 0x1000,
    };
    assert_eq!(result, Err(expected));
    assert!(!device.queue(0).enabled);
    assert_eq!(
        device.queue(0).descriptor_area,
        0,
        "checked before any write"
    );
}

#[test]
fn doorbell_offset_product_past_u32_is_rejected() {
    let settings = ModelSettings {
        queues: vec![ModelQueueSettings {
            max_size: 256,
            notify_off: u16::MAX,
        }],
        notify_off_multiplier: u32::MAX,
        ..ModelSettings::default()
    };
    let (_device, mut transport) = negotiated(settings);

    let result = transport.setup_queue(0, &queue_addresses(256), None);

    assert!(
        matches!(result, Err(TransportError::NotifyOffsetOutOfRange { .. })),
        "{result:?}"
    );
}

#[test]
fn rejected_queue_msix_vector_leaves_queue_disabled() {
    let (device, mut transport) = negotiated(ModelSettings {
        msix_vectors: 2,
        ..ModelSettings::default()
    });

    let result = transport.setup_queue(0, &queue_addresses(256), Some(5));

    let expected = TransportError::MsixVectorRejected {
        queue: Some(0),
        requested: 5,
        read_back: VIRTIO_MSI_NO_VECTOR,
    };
    assert_eq!(result, Err(expected));
    assert!(!device.queue(0).enabled);
}

#[test]
fn config_msix_vector_is_read_back() {
    let (device, mut transport) = negotiated(ModelSettings {
        msix_vectors: 2,
        ..ModelSettings::default()
    });

    assert_eq!(transport.set_config_msix_vector(Some(1)), Ok(()));
    assert_eq!(device.config_msix_vector(), 1);
    assert_eq!(transport.set_config_msix_vector(None), Ok(()));
    assert_eq!(device.config_msix_vector(), VIRTIO_MSI_NO_VECTOR);

    let result = transport.set_config_msix_vector(Some(2));
    let expected = TransportError::MsixVectorRejected {
        queue: None,
        requested: 2,
        read_back: VIRTIO_MSI_NO_VECTOR,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn isr_read_clears_it() {
    let (device, transport) = negotiated(ModelSettings::default());
    device.raise_isr(IsrStatus::QUEUE_INTERRUPT);

    let first = transport.read_isr();
    let second = transport.read_isr();

    assert!(first.queue_interrupt());
    assert!(!first.device_configuration_change());
    assert_eq!(second, IsrStatus(0));
}

#[test]
fn device_config_reads_little_endian_fields() {
    let config = vec![
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, 0x01, 0x00, 0xdc, 0x05, 0x00, 0x00,
    ];
    let (_device, transport) = negotiated(ModelSettings {
        device_config: config,
        ..ModelSettings::default()
    });

    let mut mac = [0; 6];
    transport
        .read_device_config(0, &mut mac)
        .expect("inside the region");
    assert_eq!(mac, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    assert_eq!(transport.read_device_config_u16(6), Ok(1));
    assert_eq!(transport.read_device_config_u32(8), Ok(1500));
    assert_eq!(transport.read_device_config_u8(9), Ok(0x05));
    assert_eq!(transport.device_config_length(), 12);
}

#[test]
fn device_config_read_retries_while_generation_changes() {
    let (device, transport) = negotiated(ModelSettings::default());
    device.update_device_config(4, &1u32.to_le_bytes());
    device.schedule_device_config_update(4, &2u32.to_le_bytes());
    device.schedule_device_config_update(4, &3u32.to_le_bytes());
    let generation_before = device.config_generation();

    let value = transport.read_device_config_u32(4);

    assert_eq!(value, Ok(3), "the value after the last change");
    assert_eq!(device.pending_device_config_updates(), 0);
    assert_eq!(
        device.config_generation(),
        generation_before.wrapping_add(2)
    );
}

#[test]
fn device_config_that_never_settles_is_an_error() {
    let (_device, transport) = negotiated(ModelSettings {
        config_changes_on_every_read: true,
        ..ModelSettings::default()
    });

    let result = transport.read_device_config_u16(0);

    assert_eq!(
        result,
        Err(TransportError::ConfigGenerationUnstable {
            attempts: CONFIG_READ_ATTEMPTS
        })
    );
}

#[test]
fn device_config_access_outside_region_is_rejected() {
    let (device, transport) = negotiated(ModelSettings::default());

    let invalid = |offset, width| TransportError::InvalidDeviceConfigAccess {
        offset,
        width,
        length: 8,
    };
    assert_eq!(transport.read_device_config_u32(8), Err(invalid(8, 4)));
    assert_eq!(
        transport.read_device_config_u32(2),
        Err(invalid(2, 4)),
        "misaligned"
    );
    assert_eq!(
        transport.read_device_config_u16(usize::MAX),
        Err(invalid(usize::MAX, 2))
    );
    let mut buffer = [0; 4];
    assert_eq!(
        transport.read_device_config(6, &mut buffer),
        Err(invalid(6, 4))
    );
    assert!(device.violations().is_empty(), "{:?}", device.violations());
}

#[test]
fn device_without_config_rejects_reads() {
    let (_device, transport) = negotiated(ModelSettings {
        device_config: Vec::new(),
        ..ModelSettings::default()
    });

    let result = transport.read_device_config_u8(0);

    let expected = TransportError::InvalidDeviceConfigAccess {
        offset: 0,
        width: 1,
        length: 0,
    };
    assert_eq!(result, Err(expected));
}

#[test]
fn new_rejects_short_common_config() {
    let device = ModelDevice::new(ModelSettings {
        common_length: 0x30,
        ..ModelSettings::default()
    });
    let function = PciAddress::new(0, 0, 3, 0);

    let result = PciTransport::new(function, device.registers());

    let expected = TransportError::CapabilityTooShort {
        function,
        cfg_type: CapabilityType::CommonCfg,
        length: 0x30,
        minimum_length: 56,
    };
    assert_eq!(result.map(|_| ()), Err(expected));
}
