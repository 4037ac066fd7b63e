/* gateway_bus.h -- the D-Bus names of org.cmpgw.Gateway1 (PRODUCT.md: D-Bus),
 * shared by cmpgwd (dbus_api.c) and cmpgwctl so they cannot drift apart.
 * The interface itself is dbus/org.cmpgw.Gateway1.xml. */
#pragma once

#define GW_BUS_NAME   "org.cmpgw.Gateway1"
#define GW_PATH       "/org/cmpgw/Gateway1"
#define GW_INTERFACE  "org.cmpgw.Gateway1"

#define GW_ERROR_NO_SUCH_DEVICE   "org.cmpgw.Gateway1.Error.NoSuchDevice"
#define GW_ERROR_INVALID_ARGUMENT "org.cmpgw.Gateway1.Error.InvalidArgument"
#define GW_ERROR_FAILED           "org.cmpgw.Gateway1.Error.Failed"
#define GW_ERROR_NOT_ADMITTED     "org.cmpgw.Gateway1.Error.NotAdmitted"

#define GW_PAGE_MAX 1000u       /* ListDevices' and ListAdmitted's largest page */

#define _cleanup_(f) __attribute__((cleanup(f)))
