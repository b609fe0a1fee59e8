// edge: the storefront API. Calls catalog (and the reviews service) through the
// shared UpstreamClient; holds carts in memory.
import { Body, Controller, Get, Injectable, Module, Param, Post, Query, Req, Res } from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import type { Response } from 'express';
import { bootstrap } from '../lib/bootstrap';
import { ValidationError } from '../lib/errors';
import { AllExceptionsFilter } from '../lib/filter';
import { evaluateFlag } from '../lib/flags';
import { UpstreamClient, withRetry } from '../lib/upstream';

@Injectable()
class Upstreams {
  readonly catalog = new UpstreamClient('catalog', process.env.CATALOG_URL, 5000);
  readonly reviews = new UpstreamClient('reviews', process.env.REVIEWS_URL, 1000);
}

const q = encodeURIComponent;

@Controller('storefront')
class StorefrontController {
  constructor(private readonly up: Upstreams) {}

  @Get('items/:sku')
  getItem(@Param('sku') sku: string) {
    return this.up.catalog.getJson(`/items/${q(sku)}`);
  }

  @Get('items/:sku/price')
  getPrice(@Param('sku') sku: string) {
    return this.up.catalog.getJson(`/items/${q(sku)}/price`);
  }

  @Get('items/:sku/page')
  async getProductPage(@Param('sku') sku: string, @Req() req: any) {
    const item = await this.up.catalog.getJson(`/items/${q(sku)}`);
    const widget = evaluateFlag('edge.reviews-widget', req.tenant);
    const reviews = widget === 'on' ? await this.up.reviews.getJson(`/reviews/${q(sku)}`) : [];
    return { item, reviews };
  }

  @Get('items/:sku/delivery')
  getDelivery(@Param('sku') sku: string) {
    return this.up.catalog.getJson(`/items/${q(sku)}/delivery-estimate`);
  }

  @Get('items/:sku/availability')
  getAvailability(@Param('sku') sku: string) {
    return this.up.catalog.getJson(`/items/${q(sku)}/availability`);
  }

  @Get('reports/:name')
  getReport(@Param('name') name: string) {
    return this.up.catalog.getJson(`/reports/${q(name)}`);
  }

  @Get('inventory/:sku')
  getInventory(@Param('sku') sku: string, @Query('audit') audit?: string) {
    return this.up.catalog.getJson(`/inventory/${q(sku)}${audit ? `?audit=${q(audit)}` : ''}`);
  }

  // catalog's recommendations answer 503 now and then: retried.
  @Get('recommendations')
  getRecommendations() {
    return withRetry(() => this.up.catalog.getJson('/recommendations'));
  }

  @Get('bundles/:id')
  getBundle(@Param('id') id: string) {
    return this.up.catalog.getJson(`/bundles/${q(id)}`);
  }

  @Get('orders/:id/summary')
  getOrderSummary(@Param('id') id: string) {
    return this.up.catalog.getJson(`/orders/${q(id)}/summary`);
  }
}

// In-memory carts: a session holds its cart and the cart points back at it.
interface Session {
  tenant: string;
  cart: { lines: { sku: string; qty: number }[]; session?: Session };
}
const sessions = new Map<string, Session>();

function sessionFor(tenant: string): Session {
  let s = sessions.get(tenant);
  if (!s) {
    s = { tenant, cart: { lines: [] } };
    s.cart.session = s;
    sessions.set(tenant, s);
  }
  return s;
}

@Controller('storefront')
class CartController {
  @Post('cart')
  addToCart(@Body() body: any, @Req() req: any) {
    const session = sessionFor(req.tenant);
    const lines = Array.isArray(body?.lines) ? body.lines : [];
    lines.forEach((line: any, i: number) => {
      if (!Number.isInteger(line?.qty) || line.qty <= 0) {
        // BUG (scenario error_responder_throws): the details carry the live
        // cart, which points back at its session; AllExceptionsFilter
        // serialises the details and throws on the cycle.
        throw new ValidationError(`lines[${i}].qty must be a positive integer`, {
          field: `lines[${i}].qty`,
          received: line?.qty,
          cart: session.cart,
        });
      }
    });
    session.cart.lines.push(...lines);
    return { tenant: session.tenant, lines: session.cart.lines.length };
  }

  // Checkout is frozen per tenant during a migration; the handler answers 500
  // itself (no exception anywhere).
  @Get('checkout/preview')
  previewCheckout(@Req() req: any, @Res() res: Response) {
    if (evaluateFlag('edge.checkout-freeze', req.tenant) === 'frozen') {
      res.status(500).json({ error: 'checkout_unavailable', message: 'checkout is frozen for this tenant' });
      return;
    }
    const session = sessionFor(req.tenant);
    res.json({ tenant: req.tenant, lines: session.cart.lines.length, ready: true });
  }
}

@Module({
  controllers: [StorefrontController, CartController],
  providers: [Upstreams, { provide: APP_FILTER, useClass: AllExceptionsFilter }],
})
class EdgeModule {}

bootstrap(EdgeModule, 'edge');
