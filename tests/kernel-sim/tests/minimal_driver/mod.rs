//! The smallest KMDF driver the model tests load: `DriverEntry` creates the driver with an
//! `EvtDriverDeviceAdd` that creates the device and its parallel, non-power-managed default
//! queue, whose `EvtIoDeviceControl` is the test's own. Shared by the test files that only
//! need a driver around their I/O callback.

/// Defines `device_add` and `driver_entry` (pass `driver_entry` to `Framework::load`) for a
/// driver whose default queue delivers IOCTLs to `$io_device_control`.
macro_rules! minimal_kmdf_driver {
    ($io_device_control:ident) => {
        unsafe extern "C" fn device_add(
            _driver: ::kernel_sim::WDFDRIVER,
            init: ::kernel_sim::PWDFDEVICE_INIT,
        ) -> ::kernel_sim::NTSTATUS {
            use ::kernel_sim::call_unsafe_wdf_function_binding;
            let mut init = init;
            let mut device: ::kernel_sim::WDFDEVICE = ::core::ptr::null_mut();
            // SAFETY: the framework's init block and a local out pointer.
            let status = unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDeviceCreate,
                    &raw mut init,
                    ::kernel_sim::WDF_NO_OBJECT_ATTRIBUTES,
                    &raw mut device
                )
            };
            if status != ::kernel_sim::STATUS_SUCCESS {
                return status;
            }
            let mut config = ::kernel_sim::WDF_IO_QUEUE_CONFIG {
                Size: u32::try_from(::core::mem::size_of::<::kernel_sim::WDF_IO_QUEUE_CONFIG>())
                    .unwrap(),
                DispatchType: ::kernel_sim::_WDF_IO_QUEUE_DISPATCH_TYPE::WdfIoQueueDispatchParallel,
                PowerManaged: ::kernel_sim::_WDF_TRI_STATE::WdfFalse,
                DefaultQueue: 1,
                EvtIoDeviceControl: Some($io_device_control),
                ..::kernel_sim::WDF_IO_QUEUE_CONFIG::default()
            };
            config.Settings.Parallel.NumberOfPresentedRequests = u32::MAX;
            // SAFETY: a valid device and config.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfIoQueueCreate,
                    device,
                    &raw mut config,
                    ::kernel_sim::WDF_NO_OBJECT_ATTRIBUTES,
                    ::core::ptr::null_mut()
                )
            }
        }

        unsafe extern "system" fn driver_entry(
            driver: ::kernel_sim::PDRIVER_OBJECT,
            registry_path: ::kernel_sim::PCUNICODE_STRING,
        ) -> ::kernel_sim::NTSTATUS {
            use ::kernel_sim::call_unsafe_wdf_function_binding;
            let mut config = ::kernel_sim::WDF_DRIVER_CONFIG {
                Size: u32::try_from(::core::mem::size_of::<::kernel_sim::WDF_DRIVER_CONFIG>())
                    .unwrap(),
                EvtDriverDeviceAdd: Some(device_add),
                ..::kernel_sim::WDF_DRIVER_CONFIG::default()
            };
            // SAFETY: the kernel's arguments and a valid config.
            unsafe {
                call_unsafe_wdf_function_binding!(
                    WdfDriverCreate,
                    driver,
                    registry_path,
                    ::kernel_sim::WDF_NO_OBJECT_ATTRIBUTES,
                    &raw mut config,
                    ::core::ptr::null_mut()
                )
            }
        }
    };
}
