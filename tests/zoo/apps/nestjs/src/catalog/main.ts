// catalog: items, prices (through pricing), reports, inventory, recommendations,
// bundles and order summaries. PostgreSQL through pg, Redis through ioredis.
import {
  Controller,
  Get,
  Injectable,
  Logger,
  Module,
  NotFoundException,
  OnModuleDestroy,
  Param,
  Query,
  Req,
  ServiceUnavailableException,
} from '@nestjs/common';
import { APP_FILTER } from '@nestjs/core';
import Redis from 'ioredis';
import { Pool } from 'pg';
import { AllExceptionsFilter } from '../lib/filter';
import { evaluateFlag } from '../lib/flags';
import { bootstrap } from '../lib/bootstrap';
import { UpstreamClient } from '../lib/upstream';

@Injectable()
class Stores implements OnModuleDestroy {
  readonly db = new Pool({ connectionString: process.env.PG_URL, max: 5 });
  // Reports run on their own pool; the server cancels their statements after 1.5 s.
  readonly reports = new Pool({ connectionString: process.env.PG_URL, max: 4, statement_timeout: 1500 });
  // The inventory ledger allows one connection; a request waits 300 ms for it.
  readonly ledger = new Pool({ connectionString: process.env.PG_URL, max: 1, connectionTimeoutMillis: 300 });
  readonly redis = new Redis(process.env.REDIS_URL, { maxRetriesPerRequest: 1 });

  async onModuleDestroy() {
    await Promise.allSettled([this.db.end(), this.reports.end(), this.ledger.end()]);
    this.redis.disconnect();
  }

  async tenantSettings(tenant: string) {
    const { rows } = await this.db.query(
      'SELECT tenant, region, shipping_profile FROM tenant_settings WHERE tenant = $1',
      [tenant],
    );
    return rows[0] ?? { tenant, region: 'us', shipping_profile: { carrier: 'ups', zone: 'US-DEFAULT' } };
  }

  async item(sku: string) {
    const { rows } = await this.db.query('SELECT sku, name, price_cents, weight_g FROM items WHERE sku = $1', [sku]);
    if (!rows[0]) throw new NotFoundException(`no item ${sku}`);
    return rows[0];
  }
}

@Injectable()
class Pricing {
  readonly us = new UpstreamClient('pricing', process.env.PRICING_URL);
  readonly eu = new UpstreamClient('pricing', process.env.PRICING_EU_URL);

  forRegion(region: string): UpstreamClient {
    return region === 'eu' ? this.eu : this.us;
  }
}

@Controller('items')
class ItemsController {
  constructor(
    private readonly stores: Stores,
    private readonly pricing: Pricing,
  ) {}

  @Get(':sku')
  async getItem(@Param('sku') sku: string, @Req() req: any) {
    const item = await this.stores.item(sku);
    if (evaluateFlag('catalog.shipping-v2', req.tenant) === 'v2') {
      const settings = await this.stores.tenantSettings(req.tenant);
      // BUG (scenario null_field_defect): tenants onboarded before shipping
      // profiles existed have shipping_profile NULL.
      const carrier = settings.shipping_profile.carrier;
      return { ...item, shipping: { carrier, zone: settings.shipping_profile.zone } };
    }
    return { ...item, shipping: { carrier: 'ups', zone: 'US-DEFAULT' } };
  }

  @Get(':sku/price')
  async getPrice(@Param('sku') sku: string, @Req() req: any) {
    const item = await this.stores.item(sku);
    const settings = await this.stores.tenantSettings(req.tenant);
    const quote = await this.pricing.forRegion(settings.region).getJson(`/quote/${encodeURIComponent(sku)}`);
    return { sku, name: item.name, quote };
  }

  // The shipping quote must not hold the product page: 300 ms.
  @Get(':sku/delivery-estimate')
  async getDeliveryEstimate(@Param('sku') sku: string) {
    const quote = await this.pricing.us.getJson(`/shipping-quote/${encodeURIComponent(sku)}`, { timeoutMs: 300 });
    return { sku, ...quote };
  }

  @Get(':sku/availability')
  async getAvailability(@Param('sku') sku: string) {
    const stock = await this.pricing.us.getJson<{ available: number; warehouse: string }>(
      `/stock/${encodeURIComponent(sku)}`,
    );
    return { sku, inStock: stock.available > 0, available: stock.available, warehouse: stock.warehouse };
  }
}

const REPORTS: Record<string, string> = {
  daily: 'SELECT count(*)::int AS items, sum(on_hand)::int AS units FROM items',
  annual: 'SELECT count(*)::int AS items, sum(on_hand)::int AS units FROM items, pg_sleep(2)',
};

@Controller('reports')
class ReportsController {
  constructor(private readonly stores: Stores) {}

  @Get(':name')
  async getReport(@Param('name') name: string) {
    const sql = REPORTS[name];
    if (!sql) throw new NotFoundException(`no report ${name}`);
    const { rows } = await this.stores.reports.query(sql);
    return { report: name, ...rows[0] };
  }
}

@Controller('inventory')
class InventoryController {
  constructor(private readonly stores: Stores) {}

  @Get(':sku')
  async getOnHand(@Param('sku') sku: string, @Query('audit') audit?: string) {
    const sql =
      audit === 'full'
        ? 'SELECT sku, on_hand FROM items, pg_sleep(1.2) WHERE sku = $1'
        : 'SELECT sku, on_hand FROM items WHERE sku = $1';
    const { rows } = await this.stores.ledger.query(sql, [sku]);
    if (!rows[0]) throw new NotFoundException(`no item ${sku}`);
    return rows[0];
  }
}

@Controller('recommendations')
class RecommendationsController {
  constructor(private readonly stores: Stores) {}

  @Get()
  async getRecommendations(@Req() req: any) {
    let skus: string[];
    try {
      skus = await this.stores.redis.lrange(`recs:${req.tenant}`, 0, 9);
    } catch (err) {
      throw new ServiceUnavailableException('recommendations store unavailable', { cause: err });
    }
    return { tenant: req.tenant, skus };
  }
}

@Controller('bundles')
class BundlesController {
  private readonly logger = new Logger('BundlesController');

  constructor(private readonly stores: Stores) {}

  @Get(':id')
  async getBundle(@Param('id') id: string) {
    let cached: string | null = null;
    try {
      cached = await this.stores.redis.get(`bundle:${id}`);
    } catch (err) {
      this.logger.warn(`bundle cache read failed, reading the database: ${(err as Error).message}`);
    }
    if (cached) return JSON.parse(cached);
    const { rows } = await this.stores.db.query('SELECT id, name, components FROM bundles WHERE id = $1', [id]);
    if (!rows[0]) throw new NotFoundException(`no bundle ${id}`);
    const bundle = rows[0];
    // BUG (scenario recovered_then_defect): bundles migrated from the old shop
    // have components NULL.
    const skus = bundle.components.map((c: { sku: string }) => c.sku);
    return { id: bundle.id, name: bundle.name, skus };
  }
}

@Controller('orders')
class OrdersController {
  constructor(private readonly stores: Stores) {}

  @Get(':id/summary')
  async getOrderSummary(@Param('id') id: string) {
    const { rows: lines } = await this.stores.db.query(
      'SELECT line_no, sku, qty FROM order_lines WHERE order_id = $1 ORDER BY line_no',
      [id],
    );
    if (!lines.length) throw new NotFoundException(`no order ${id}`);
    // One query per line (N+1).
    const items = [];
    for (const line of lines) {
      const { rows } = await this.stores.db.query(
        'SELECT sku, name, price_cents, discount FROM items WHERE sku = $1',
        [line.sku],
      );
      items.push({ ...line, item: rows[0] });
    }
    // BUG (scenario n_plus_one_then_defect): items without a discount have
    // discount NULL.
    const priced = items.map((l) => ({
      sku: l.sku,
      qty: l.qty,
      cents: Math.round(l.item.price_cents * l.qty * (1 - l.item.discount.percent / 100)),
    }));
    return { order: id, lines: priced, totalCents: priced.reduce((s, l) => s + l.cents, 0) };
  }
}

@Module({
  controllers: [
    ItemsController,
    ReportsController,
    InventoryController,
    RecommendationsController,
    BundlesController,
    OrdersController,
  ],
  providers: [Stores, Pricing, { provide: APP_FILTER, useClass: AllExceptionsFilter }],
})
class CatalogModule {}

bootstrap(CatalogModule, 'catalog');
